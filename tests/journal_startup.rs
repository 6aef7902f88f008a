//! Start-up tells the truth about the journal, against the real binary: a store that can never
//! work as configured (a folder that is missing or not writable, a malformed URL, wrong
//! credentials, a certificate that does not verify) stops `serve` with exit 2 and a message naming
//! the setting; one that is only unreachable for now serves, says so (`journal_up` 0, `/readyz`,
//! the log), holds events and retries. A PostgreSQL journal is reached through libpq's `PG*`
//! variables, a password file and a unix-socket folder.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Serve;

/// Runs `serve` with `args` (and the shipped templates) until it exits; returns (code, stderr).
/// `prefix` runs it through another program first (e.g. `setpriv`).
fn serve_exits(prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let binary = env!("CARGO_BIN_EXE_twiml-failover");
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--watch", "false"])
        .arg("--templates")
        .arg(common::shipped_templates())
        .arg("--config")
        .arg(common::example_config())
        .args(args)
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", common::TOKEN)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve did not exit: it started with a journal that cannot work:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_refused(prefix: &[&str], journal: &str, env: &[(&str, &str)], names: &str) {
    let (code, stderr) = serve_exits(prefix, &["--journal", journal], env);
    assert_eq!(code, 2, "{journal}: {stderr}");
    assert!(
        stderr.contains("error: journal: ") && stderr.contains(names),
        "{journal}: the message names the setting and {names:?}:\n{stderr}"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn a_sqlite_journal_that_can_never_work_refuses_to_start() {
    assert_refused(&[], "sqlite:///proc/nope/x.db", &[], "/proc/nope");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert_refused(
        &[],
        &format!("sqlite://{}/j.db", file.display()),
        &[],
        "does not exist",
    );
    // Not a database at all.
    std::fs::write(
        &file,
        "not a database, just text that is long enough to be read",
    )
    .unwrap();
    assert_refused(&[], &format!("sqlite://{}", file.display()), &[], "file");

    // A folder the process may not write. Root may write anywhere: run as nobody then.
    use std::os::unix::fs::PermissionsExt;
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let read_only = open.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let unprivileged: &[&str] = if is_root() {
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
        ]
    } else {
        &[]
    };
    assert_refused(
        unprivileged,
        &format!("sqlite://{}/j.db", read_only.display()),
        &[],
        "cannot create files in",
    );
}

#[test]
fn a_malformed_postgres_url_refuses_to_start_naming_the_setting() {
    assert_refused(&[], "postgres://u@h:port/db", &[], "postgres URL");
    assert_refused(&[], "postgres://", &[], "PGUSER");
    assert_refused(&[], "postgres://", &[("PGUSER", "u")], "PGHOST");
    assert_refused(
        &[],
        "postgres://u@h/db",
        &[("PGSSLMODE", "maybe")],
        "sslmode",
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("password");
    let (code, stderr) = serve_exits(
        &[],
        &[
            "--journal",
            "postgres://u@h/db",
            "--journal-password-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: journal-password-file: "),
        "{stderr}"
    );
}

/// Nothing listens on port 9: the server starts, answers, and says the journal is down.
#[test]
fn a_journal_unreachable_for_now_serves_and_says_so() {
    let server = Serve::shipped(&[
        "--journal",
        "postgres://twiml@127.0.0.1:9/journal",
        "--watch",
        "false",
    ]);
    assert!(
        server
            .log()
            .contains("journal unreachable at start-up; serving anyway"),
        "{}",
        server.log()
    );
    let ready = server.get("/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("journal: down"), "{ready}");
    let answer = server.sms("hi").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metrics = server.get("/metrics").unwrap();
    assert!(metrics.contains("twiml_failover_journal_up 0"), "{metrics}");
    assert!(
        metrics.contains("twiml_failover_journal_buffered_events 1"),
        "{metrics}"
    );
}

/// `(user, password, port)` of the test server's URL `postgres://user:password@127.0.0.1:port/db`.
fn test_server_parts() -> (String, String, String) {
    let url = common::postgres_url();
    let rest = url.split("://").nth(1).unwrap();
    let (userinfo, hostport) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let port = hostport
        .split(['/', '?'])
        .next()
        .unwrap()
        .rsplit(':')
        .next();
    (user.into(), password.into(), port.unwrap().into())
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn postgres_that_can_never_work_refuses_to_start() {
    let (user, password, port) = test_server_parts();
    let db = common::fresh_postgres_db(&common::postgres_url(), "tf_startup_never");
    let dbname = db.rsplit('/').next().unwrap();
    let host = format!("127.0.0.1:{port}");
    assert_refused(
        &[],
        &format!("postgres://{user}:wrong-{password}@{host}/{dbname}"),
        &[],
        "password authentication failed",
    );
    assert_refused(
        &[],
        &format!("postgres://{user}:{password}@{host}/tf_no_such_database"),
        &[],
        "tf_no_such_database",
    );
    // The server's certificate is signed by the test CA, which the web roots do not hold.
    assert_refused(
        &[],
        &format!("postgres://{user}:{password}@{host}/{dbname}?sslmode=verify-full"),
        &[],
        "certificate",
    );
}

/// The Cloud Run shape: the journal URL is only `postgres://`; the host is the server's unix-socket
/// folder (`PGHOST`), the rest comes from `PG*` and the password from a file. The events arrive,
/// over the socket.
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: eval \"$(bash .ci/postgres.sh)\" && cargo test"
)]
fn postgres_over_a_unix_socket_from_pg_variables_and_a_password_file() {
    let socket_dir = std::env::var("TWIML_FAILOVER_PG_SOCKET")
        .expect("TWIML_FAILOVER_PG_SOCKET: the folder .ci/postgres.sh puts the server's socket in");
    let (user, password, port) = test_server_parts();
    assert!(
        Path::new(&socket_dir)
            .join(format!(".s.PGSQL.{port}"))
            .exists(),
        "the test server listens on a unix socket in {socket_dir}"
    );
    let db = common::fresh_postgres_db(&common::postgres_url(), "tf_unix_socket");
    let dbname = db.rsplit('/').next().unwrap().to_string();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let env = [
        ("TWIML_FAILOVER_JOURNAL", "postgres://"),
        ("PGHOST", socket_dir.as_str()),
        ("PGPORT", port.as_str()),
        ("PGUSER", user.as_str()),
        ("PGDATABASE", dbname.as_str()),
        // libpq never uses TLS on a socket; neither may this.
        ("PGSSLMODE", "verify-full"),
    ];
    let server = Serve::shipped_with(
        &[
            "--watch",
            "false",
            "--journal-password-file",
            password_file.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        server.log().contains(&format!(
            "postgres host={socket_dir} port={port} user={user} dbname={dbname} sslmode=disable"
        )),
        "{}",
        server.log()
    );
    let answer = server.sms("over the socket").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut admin = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin
            .query(
                "SELECT conversation FROM twiml_failover_events \
                 WHERE conversation = 'SM00000000000000000000000000000001'",
                &[],
            )
            .unwrap();
        if rows.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never journaled:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server's own connections came over the socket (no client address).
    let over_socket: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND client_addr IS NULL \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[&dbname],
        )
        .unwrap()
        .get(0);
    assert!(
        over_socket >= 1,
        "no unix-socket connection from the server"
    );
    assert!(server
        .get("/metrics")
        .unwrap()
        .contains("twiml_failover_journal_up 1"));
    // The journal commands read the same settings (e.g. `kubectl exec` in a pod: its environment).
    let password_file = password_file.to_str().unwrap();
    let mut with_file = env.to_vec();
    with_file.push(("TWIML_FAILOVER_JOURNAL_PASSWORD_FILE", password_file));
    let (code, stdout, stderr) =
        common::run_bin(&["journal", "stats", "--format", "json"], &with_file);
    assert_eq!(code, 0, "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["total"], 1, "{stdout}");
}
