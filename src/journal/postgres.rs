//! The shared journal: a PostgreSQL table, for replicas without a durable disk of their own.
//! A batch is appended with one statement over arrays, so a group commit is two round trips.
//!
//! [`Target`] is where the journal lives, completed once at start-up the way libpq completes a
//! connection string (`PGHOST`, `PGPORT`, ... where the URL leaves a setting out; the password from
//! the URL, a password file, `PGPASSWORD` or `PGPASSFILE`). I/O: it reads those files, and the
//! store talks to the server.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    params_from_json, params_to_json, stored_role, Appended, Event, JournalError, NewEvent, Stats,
    Store, Unavailable,
};

const TABLE: &str = "twiml_failover_events";

const COLUMNS: &str =
    "id, received_at_ms, role, method, url, path, params, error_code, error_url, \
     idempotency_key, conversation, account_sid, delivered_at_ms, attempts, next_attempt_at_ms, \
     last_error";

/// Connect timeout when neither the URL nor `PGCONNECT_TIMEOUT` sets one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a health check waits for the server.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// libpq's `sslmode` values, weakest first.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

fn err(e: postgres::Error) -> JournalError {
    // The driver's messages name the server's complaint, never the connection string; the
    // cause (an I/O or TLS error) says what actually went wrong.
    match std::error::Error::source(&e) {
        Some(cause) => JournalError::new(format!("postgres: {e}: {cause}")),
        None => JournalError::new(format!("postgres: {e}")),
    }
}

/// Where what a journal URL leaves out is looked up, as libpq looks for it.
pub struct Sources<'a> {
    /// Reads an environment variable (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGSSLMODE`, `PGSSLROOTCERT`, `PGPASSFILE`, `PGCONNECT_TIMEOUT`, `HOME`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The password read from `--journal-password-file`, if given.
    pub password: Option<String>,
}

impl Sources<'_> {
    /// Nothing but the URL itself.
    pub fn none() -> Sources<'static> {
        Sources {
            env: &|_| None,
            password: None,
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }
}

/// A PostgreSQL journal, complete: the URL as given and the driver settings it resolved to. Cheap
/// to clone.
#[derive(Clone)]
pub struct Target(Arc<Resolved>);

struct Resolved {
    /// As given (shown with any password hidden).
    url: String,
    config: postgres::Config,
    /// Set when the connection uses TLS: the roots the server's certificate is checked against.
    tls: Option<rustls::ClientConfig>,
    /// For the start-up log line: the sslmode in effect.
    sslmode: &'static str,
}

impl Target {
    /// Completes `url` from `sources` as libpq would: each setting the URL leaves out comes from
    /// its `PG*` variable; the password from the URL, else `sources.password`, else `PGPASSWORD`,
    /// else the password file (`PGPASSFILE`, default `~/.pgpass`). Reads the password file and the
    /// `sslrootcert` file now; touches no network. Errors name the setting to fix.
    // Long on purpose: libpq's completion rules, one setting after another in its documented order.
    pub fn new(url: &str, sources: &Sources<'_>) -> Result<Target, JournalError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(JournalError::new("postgres URL must not contain spaces"));
        }
        let (rest, url_root) = take_query_param(url, "sslrootcert");
        let (rest, url_mode) = take_query_param(&rest, "sslmode");
        // libpq takes PGPORT for hosts written without a port; the driver would assume 5432.
        let rest = match sources.var("PGPORT") {
            Some(ports) if !authority_has_port(&rest) => with_ports(&rest, &ports)?,
            _ => rest,
        };
        let mut config: postgres::Config = rest
            .parse()
            .map_err(|_| JournalError::new("not a valid postgres URL"))?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            if let Some(hosts) = sources.var("PGHOST") {
                for host in hosts.split(',') {
                    config.host(host);
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(ports) = sources.var("PGPORT") {
                for port in ports.split(',') {
                    config.port(parse_port(port)?);
                }
            }
        }
        if config.get_user().is_none_or(str::is_empty) {
            if let Some(user) = sources.var("PGUSER") {
                config.user(&user);
            }
        }
        if config.get_dbname().is_none() {
            if let Some(dbname) = sources.var("PGDATABASE") {
                config.dbname(&dbname);
            }
        }
        if config.get_connect_timeout().is_none() {
            let timeout = match sources.var("PGCONNECT_TIMEOUT") {
                Some(raw) => match raw.trim().parse::<u64>() {
                    // libpq: 0 or negative waits forever; a journal never should.
                    Ok(s) if s > 0 => Duration::from_secs(s),
                    _ => {
                        return Err(JournalError::new(format!(
                            "PGCONNECT_TIMEOUT: {raw:?} is not a number of seconds above 0"
                        )))
                    }
                },
                None => CONNECT_TIMEOUT,
            };
            config.connect_timeout(timeout);
        }
        let user = match config.get_user() {
            Some(user) if !user.is_empty() => user.to_string(),
            _ => {
                return Err(JournalError::new(
                    "no user: write it in the URL (postgres://USER@host/db) or set PGUSER",
                ))
            }
        };
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(JournalError::new(
                "no host: write it in the URL (postgres://user@HOST/db) or set PGHOST (a folder \
                 such as /cloudsql/PROJECT:REGION:INSTANCE for a unix socket)",
            ));
        }
        match (config.get_password().is_some(), sources.password.clone()) {
            (true, Some(_)) => {
                return Err(JournalError::new(
                    "the URL has a password and a password file is given too: keep one",
                ))
            }
            (true, None) => {}
            (false, Some(password)) => {
                config.password(password);
            }
            (false, None) => {
                if let Some(password) = sources.var("PGPASSWORD") {
                    config.password(password);
                } else if let Some(password) = password_from_file(&config, &user, sources)? {
                    config.password(password);
                }
            }
        }
        let sslmode = match url_mode.or_else(|| sources.var("PGSSLMODE")) {
            Some(mode) => SSL_MODES.into_iter().find(|m| *m == mode).ok_or_else(|| {
                JournalError::new(format!(
                    "sslmode {mode:?} is not one of {}",
                    SSL_MODES.join(", ")
                ))
            })?,
            None => "disable",
        };
        let unix_only = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
            && config.get_hostaddrs().is_empty();
        // libpq never uses TLS on a unix socket (the server would refuse it), whatever sslmode says;
        // below require it only tries TLS, and this client then does not.
        let tls = if unix_only || !matches!(sslmode, "require" | "verify-ca" | "verify-full") {
            config.ssl_mode(SslMode::Disable);
            None
        } else {
            config.ssl_mode(SslMode::Require);
            let root = url_root
                .or_else(|| sources.var("PGSSLROOTCERT"))
                .filter(|r| r != "system");
            Some(tls_config(root.as_deref())?)
        };
        Ok(Target(Arc::new(Resolved {
            url: url.to_string(),
            config,
            sslmode: if tls.is_some() { sslmode } else { "disable" },
            tls,
        })))
    }

    /// The URL as given (may hold a password: show it through `JournalUrl`'s `Display`).
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// A connection, set up like the store's; the forwarder holds its leadership lock on one.
    pub fn client(&self) -> Result<Client, JournalError> {
        self.connect_with(None).map_err(err)
    }

    fn connect_with(&self, timeout: Option<Duration>) -> Result<Client, postgres::Error> {
        let mut config = self.0.config.clone();
        if let Some(t) = timeout {
            config.connect_timeout(t.min(*config.get_connect_timeout().unwrap_or(&t)));
        }
        match &self.0.tls {
            Some(tls) => config.connect(MakeRustlsConnect::new(tls.clone())),
            None => config.connect(NoTls),
        }
    }
}

impl fmt::Display for Target {
    /// What the URL resolved to, without the password: `host=db.internal port=5432 user=app
    /// dbname=app sslmode=verify-full`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0.config;
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .chain(c.get_hostaddrs().iter().map(ToString::to_string))
            .collect();
        let ports: Vec<String> = c.get_ports().iter().map(ToString::to_string).collect();
        let user = c.get_user().unwrap_or_default();
        write!(
            f,
            "host={} port={} user={user} dbname={} sslmode={}",
            hosts.join(","),
            if ports.is_empty() {
                "5432".to_string()
            } else {
                ports.join(",")
            },
            c.get_dbname().unwrap_or(user),
            self.0.sslmode
        )
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.0.url == other.0.url && self.to_string() == other.to_string()
    }
}

impl Eq for Target {}

fn parse_port(raw: &str) -> Result<u16, JournalError> {
    raw.trim()
        .parse()
        .map_err(|_| JournalError::new(format!("PGPORT: {raw:?} is not a port")))
}

/// The `host[:port],...` part of a URL: after the scheme and any `user[:password]@`.
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let hosts_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (hosts_start, end)
}

/// Whether any host in the URL is written with its port.
fn authority_has_port(url: &str) -> bool {
    let (start, end) = authority(url);
    url[start..end]
        .split(',')
        .any(|chunk| match chunk.rfind(']') {
            Some(i) => chunk[i..].contains(':'),
            None => chunk.contains(':'),
        })
}

/// The URL with `PGPORT`'s port(s) written after each host of its authority.
fn with_ports(url: &str, ports: &str) -> Result<String, JournalError> {
    let (start, end) = authority(url);
    if start == end {
        return Ok(url.to_string());
    }
    let ports: Vec<u16> = ports.split(',').map(parse_port).collect::<Result<_, _>>()?;
    let hosts: Vec<String> = url[start..end]
        .split(',')
        .enumerate()
        .map(|(i, host)| format!("{host}:{}", ports.get(i).unwrap_or(&ports[0])))
        .collect();
    Ok(format!(
        "{}{}{}",
        &url[..start],
        hosts.join(","),
        &url[end..]
    ))
}

/// libpq's password file lookup: `PGPASSFILE`, else `~/.pgpass` when it exists; lines
/// `hostname:port:database:username:password`, `*` matching anything, `\` escaping `:` and `\`,
/// the first match wins. libpq ignores a file that group or others may read; so does this, but
/// refuses to start instead of failing later without a password.
fn password_from_file(
    config: &postgres::Config,
    user: &str,
    sources: &Sources<'_>,
) -> Result<Option<String>, JournalError> {
    let (path, named) = match sources.var("PGPASSFILE") {
        Some(p) => (PathBuf::from(p), true),
        None => match sources.var("HOME") {
            Some(home) => (Path::new(&home).join(".pgpass"), false),
            None => return Ok(None),
        },
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(_) if !named => return Ok(None),
        Err(e) => {
            return Err(JournalError::new(format!(
                "PGPASSFILE: cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if !meta.is_file() {
        return Err(JournalError::new(format!(
            "PGPASSFILE: {} is not a plain file",
            path.display()
        )));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(JournalError::new(format!(
                "PGPASSFILE: {} has group or world access; libpq ignores such a file: chmod 0600 \
                 it, or give the password with --journal-password-file",
                path.display()
            )));
        }
    }
    let text = crate::operator_file::read_text(&path, crate::operator_file::MAX_SECRET_BYTES)
        .map_err(|e| JournalError::new(format!("PGPASSFILE: cannot read {e}")))?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        // libpq matches a unix socket in the default folder as "localhost", any other by its path.
        Some(Host::Unix(dir)) if is_default_socket_dir(dir) => "localhost".to_string(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => config
            .get_hostaddrs()
            .first()
            .map_or_else(|| "localhost".to_string(), ToString::to_string),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let dbname = config.get_dbname().unwrap_or(user);
    Ok(pgpass_lookup(&text, [&host, &port, dbname, user]))
}

fn is_default_socket_dir(dir: &Path) -> bool {
    ["/tmp", "/var/run/postgresql", "/run/postgresql"]
        .iter()
        .any(|d| dir == Path::new(d))
}

/// The password of the first line of a `.pgpass` text matching host, port, database and user.
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let mut rest = line;
            for value in wanted {
                rest = pgpass_field_matches(rest, value)?;
            }
            // The password ends at the first unescaped ':' (libpq's de-escaping).
            let mut password = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    ':' => break,
                    '\\' => password.extend(chars.next()),
                    c => password.push(c),
                }
            }
            Some(password)
        })
}

/// libpq's `pwdfMatchesString`: `*:` matches anything; otherwise the field, `\`-unescaped, must
/// equal `value`. Returns what follows the field's `:`.
fn pgpass_field_matches<'a>(field: &'a str, value: &str) -> Option<&'a str> {
    if let Some(rest) = field.strip_prefix("*:") {
        return Some(rest);
    }
    let mut wanted = value.chars();
    let mut chars = field.char_indices();
    while let Some((i, c)) = chars.next() {
        let c = match c {
            ':' => return wanted.next().is_none().then(|| &field[i + 1..]),
            '\\' => chars.next()?.1,
            c => c,
        };
        if wanted.next() != Some(c) {
            return None;
        }
    }
    None
}

/// A connection to a PostgreSQL journal.
pub struct PostgresStore {
    client: Client,
}

impl PostgresStore {
    /// Connects and creates the table. `sslmode=require` (or `verify-full`) uses TLS (rustls),
    /// verifying the server against the public web roots plus `sslrootcert=FILE` (PEM) when given;
    /// without it the connection is plain (loopback or a private network only).
    pub fn connect(target: &Target) -> Result<PostgresStore, JournalError> {
        PostgresStore::open(target, None).map_err(err)
    }

    fn open(target: &Target, timeout: Option<Duration>) -> Result<PostgresStore, postgres::Error> {
        let mut client = target.connect_with(timeout)?;
        let mut tx = client.transaction()?;
        // Replicas starting together would race on CREATE TABLE; one lock serialises them.
        // The "already exists, skipping" notices of every reconnect are not worth a log line.
        tx.batch_execute(
            "SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock(7300412)",
        )?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (
                id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                idempotency_key    TEXT    NOT NULL UNIQUE,
                received_at_ms     BIGINT  NOT NULL,
                role               TEXT    NOT NULL,
                method             TEXT    NOT NULL,
                url                TEXT    NOT NULL,
                path               TEXT    NOT NULL,
                params             TEXT    NOT NULL,
                error_code         TEXT,
                error_url          TEXT,
                conversation       TEXT    NOT NULL,
                account_sid        TEXT,
                delivered_at_ms    BIGINT,
                attempts           INTEGER NOT NULL DEFAULT 0,
                next_attempt_at_ms BIGINT  NOT NULL,
                last_error         TEXT
            );
            CREATE INDEX IF NOT EXISTS {TABLE}_undelivered ON {TABLE} (id)
                WHERE delivered_at_ms IS NULL;
            CREATE INDEX IF NOT EXISTS {TABLE}_received ON {TABLE} (received_at_ms);
            CREATE INDEX IF NOT EXISTS {TABLE}_delivered ON {TABLE} (delivered_at_ms)
                WHERE delivered_at_ms IS NOT NULL;"
        ))?;
        tx.commit()?;
        Ok(PostgresStore { client })
    }

    fn query(
        &mut self,
        sql: &str,
        args: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Event>, JournalError> {
        let rows = self.client.query(sql, args).map_err(err)?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Start-up's one attempt: connects (within `timeout`) and creates the table. A failure that
/// retrying cannot mend (credentials, a database or privilege that does not exist, a server
/// certificate that does not verify, no TLS where it is required) is [`Unavailable::Never`];
/// anything else (refused, timed out, the server starting up or shutting down) is
/// [`Unavailable::ForNow`].
pub fn probe(target: &Target, timeout: Duration) -> Result<(), Unavailable> {
    match PostgresStore::open(target, Some(timeout)) {
        Ok(_) => Ok(()),
        Err(e) if never_works(&e) => Err(Unavailable::Never(err(e))),
        Err(e) => Err(Unavailable::ForNow(err(e))),
    }
}

fn never_works(e: &postgres::Error) -> bool {
    if let Some(code) = e.code() {
        // 28: authorization (password, pg_hba, role); 3D: no such database; 42: privilege (the
        // table cannot be created) or syntax. Everything else may pass (57P03 starting up, 53300
        // too many connections, 08: connection, 25: read-only during a failover).
        return ["28", "3D", "42"]
            .iter()
            .any(|class| code.code().starts_with(class));
    }
    // No SQLSTATE: the driver's own verdicts. A TLS failure is a misconfiguration (no TLS on the
    // server, a certificate that does not verify) unless it is an I/O error of the handshake;
    // the driver's configuration errors (e.g. a password the server asks for and nobody gave).
    let text = e.to_string();
    if text.starts_with("invalid configuration") || text.starts_with("authentication error") {
        return true;
    }
    if !text.starts_with("error performing TLS handshake") {
        return false;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        }
        cause = c.source();
    }
    true
}

/// Removes `name=value` from the URL's query (the driver refuses options it does not know).
fn take_query_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                false
            }
            _ => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), value)
    } else {
        (format!("{base}?{}", rest.join("&")), value)
    }
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, JournalError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = root_cert {
        let certs = crate::operator_file::read_certificates(std::path::Path::new(path))
            .map_err(|e| JournalError::new(format!("sslrootcert {e}")))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| JournalError::new(format!("sslrootcert {path}: {e}")))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| JournalError::new(format!("tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

fn event_from_row(row: &Row) -> Result<Event, JournalError> {
    let get = |e: postgres::Error| err(e);
    let params: String = row.try_get(6).map_err(get)?;
    let attempts: i32 = row.try_get(13).map_err(get)?;
    Ok(Event {
        id: row.try_get(0).map_err(get)?,
        webhook: NewEvent {
            received_at_ms: row.try_get(1).map_err(get)?,
            role: stored_role(row.try_get(2).map_err(get)?)?,
            method: row.try_get(3).map_err(get)?,
            url: row.try_get(4).map_err(get)?,
            path: row.try_get(5).map_err(get)?,
            params: params_from_json(&params)?,
            error_code: row.try_get(7).map_err(get)?,
            error_url: row.try_get(8).map_err(get)?,
            idempotency_key: row.try_get(9).map_err(get)?,
            conversation: row.try_get(10).map_err(get)?,
            account_sid: row.try_get(11).map_err(get)?,
        },
        delivered_at_ms: row.try_get(12).map_err(get)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at_ms: row.try_get(14).map_err(get)?,
        last_error: row.try_get(15).map_err(get)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    // Long on purpose: one transaction, its statements and their error handling read in order.
    fn append(&mut self, batch: &[NewEvent]) -> Result<Vec<Appended>, JournalError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = batch.iter().map(|e| e.idempotency_key.as_str()).collect();
        let received: Vec<i64> = batch.iter().map(|e| e.received_at_ms).collect();
        let roles: Vec<&str> = batch.iter().map(|e| e.role.as_str()).collect();
        let methods: Vec<&str> = batch.iter().map(|e| e.method.as_str()).collect();
        let urls: Vec<&str> = batch.iter().map(|e| e.url.as_str()).collect();
        let paths: Vec<&str> = batch.iter().map(|e| e.path.as_str()).collect();
        let params: Vec<String> = batch.iter().map(|e| params_to_json(&e.params)).collect();
        let codes: Vec<Option<&str>> = batch.iter().map(|e| e.error_code.as_deref()).collect();
        let error_urls: Vec<Option<&str>> = batch.iter().map(|e| e.error_url.as_deref()).collect();
        let conversations: Vec<&str> = batch.iter().map(|e| e.conversation.as_str()).collect();
        let accounts: Vec<Option<&str>> = batch.iter().map(|e| e.account_sid.as_deref()).collect();

        let mut tx = self.client.transaction().map_err(err)?;
        // Only rows to insert reach the INSERT: the first of a key repeated inside the batch
        // (DISTINCT ON), and only keys not already stored, because a row that meets ON CONFLICT
        // has already drawn its id from the sequence, and `journal list` would show a gap for
        // every Twilio retry. ON CONFLICT stays for two replicas inserting the same key at once
        // (that rare race still uses up an id). ORDER BY ord keeps ids in arrival order.
        let inserted = tx
            .query(
                &format!(
                    "INSERT INTO {TABLE} (idempotency_key, received_at_ms, role, method, url, path, \
                     params, error_code, error_url, conversation, account_sid, next_attempt_at_ms) \
                     SELECT k, r, ro, m, u, p, pa, ec, eu, c, a, r FROM ( \
                       SELECT DISTINCT ON (k) * FROM unnest( \
                         $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::text[]) \
                       WITH ORDINALITY AS t(k, r, ro, m, u, p, pa, ec, eu, c, a, ord) \
                       ORDER BY k, ord) AS first \
                     WHERE NOT EXISTS (SELECT 1 FROM {TABLE} e WHERE e.idempotency_key = first.k) \
                     ORDER BY ord \
                     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key"
                ),
                &[
                    &keys,
                    &received,
                    &roles,
                    &methods,
                    &urls,
                    &paths,
                    &params,
                    &codes,
                    &error_urls,
                    &conversations,
                    &accounts,
                ],
            )
            .map_err(err)?;
        let mut new: HashMap<String, i64> = HashMap::with_capacity(inserted.len());
        for row in &inserted {
            new.insert(row.get(1), row.get(0));
        }
        let mut old: HashMap<String, i64> = HashMap::new();
        if inserted.len() < batch.len() {
            let missing: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !new.contains_key(*k))
                .collect();
            for row in tx
                .query(
                    &format!(
                        "SELECT id, idempotency_key FROM {TABLE} WHERE idempotency_key = ANY($1)"
                    ),
                    &[&missing],
                )
                .map_err(err)?
            {
                old.insert(row.get(1), row.get(0));
            }
        }
        tx.commit().map_err(err)?;
        let mut out = Vec::with_capacity(batch.len());
        for key in keys {
            // The first occurrence of a key inserted now is New; any later one is a duplicate.
            if let Some(id) = new.remove(key) {
                old.insert(key.to_string(), id);
                out.push(Appended::New(id));
            } else {
                let id = old
                    .get(key)
                    .copied()
                    .ok_or_else(|| JournalError::new("postgres: appended row not found"))?;
                out.push(Appended::Duplicate(id));
            }
        }
        Ok(out)
    }

    fn undelivered(&mut self, after_id: i64, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE delivered_at_ms IS NULL AND id > $1 \
                 ORDER BY id LIMIT $2"
            ),
            &[&after_id, &limit(n)],
        )
    }

    fn mark_delivered(&mut self, id: i64, at_ms: i64) -> Result<(), JournalError> {
        self.client
            .execute(
                &format!(
                    "UPDATE {TABLE} SET delivered_at_ms = $2 WHERE id = $1 AND delivered_at_ms IS NULL"
                ),
                &[&id, &at_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn record_failure(
        &mut self,
        id: i64,
        error: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), JournalError> {
        self.client
            .execute(
                &format!(
                    "UPDATE {TABLE} SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at_ms = $3 WHERE id = $1"
                ),
                &[&id, &error, &next_attempt_at_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn stats(&mut self) -> Result<Stats, JournalError> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE delivered_at_ms IS NULL), \
                     min(received_at_ms) FILTER (WHERE delivered_at_ms IS NULL) FROM {TABLE}"
                ),
                &[],
            )
            .map_err(err)?;
        let total = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let undelivered = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
        Ok(Stats {
            total,
            undelivered,
            oldest_undelivered_ms: row.get(2),
            delivered: total.saturating_sub(undelivered),
        })
    }

    fn list(&mut self, since_ms: Option<i64>, n: usize) -> Result<Vec<Event>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM {TABLE} WHERE received_at_ms >= $1 \
                 ORDER BY received_at_ms, id LIMIT $2"
            ),
            &[&since_ms.unwrap_or(i64::MIN), &limit(n)],
        )
    }

    fn get(&mut self, id: i64) -> Result<Option<Event>, JournalError> {
        Ok(self
            .query(
                &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"),
                &[&id],
            )?
            .pop())
    }

    fn prune_delivered(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        self.client
            .execute(
                &format!(
                    "DELETE FROM {TABLE} WHERE delivered_at_ms IS NOT NULL AND delivered_at_ms < $1"
                ),
                &[&before_ms],
            )
            .map_err(err)
    }

    fn prune_received(&mut self, before_ms: i64) -> Result<u64, JournalError> {
        self.client
            .execute(
                &format!("DELETE FROM {TABLE} WHERE received_at_ms < $1"),
                &[&before_ms],
            )
            .map_err(err)
    }

    fn ping(&mut self) -> Result<(), JournalError> {
        // Bounded: a server that accepts and never answers must not hold the writer forever.
        self.client.is_valid(PING_TIMEOUT).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn new_target(
        url: &str,
        vars: &'static [(&'static str, &'static str)],
        password: Option<&str>,
    ) -> Result<Target, JournalError> {
        let env = env(vars);
        Target::new(
            url,
            &Sources {
                env: &env,
                password: password.map(String::from),
            },
        )
    }

    fn target(url: &str, vars: &'static [(&'static str, &'static str)]) -> Target {
        new_target(url, vars, None).unwrap()
    }

    fn refused(url: &str, vars: &'static [(&'static str, &'static str)]) -> String {
        new_target(url, vars, None).unwrap_err().to_string()
    }

    #[test]
    fn our_options_are_taken_out_of_the_url() {
        assert_eq!(
            take_query_param(
                "postgres://h/db?sslmode=require&sslrootcert=%2Fca.pem",
                "sslrootcert"
            ),
            (
                "postgres://h/db?sslmode=require".to_string(),
                Some("/ca.pem".to_string())
            )
        );
        assert_eq!(
            take_query_param("postgres://h/db?sslrootcert=/ca.pem", "sslrootcert"),
            ("postgres://h/db".to_string(), Some("/ca.pem".to_string()))
        );
        assert_eq!(
            take_query_param("postgres://h/db", "sslmode"),
            ("postgres://h/db".to_string(), None)
        );
    }

    #[test]
    fn a_missing_root_certificate_is_named() {
        let e = tls_config(Some("/no/such/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
        assert!(tls_config(None).is_ok());
        let e = refused(
            "postgres://u@db/j?sslmode=verify-full&sslrootcert=/no/ca.pem",
            &[],
        );
        assert!(e.contains("/no/ca.pem"), "{e}");
    }

    #[test]
    fn what_the_url_leaves_out_comes_from_the_pg_variables() {
        const ENV: &[(&str, &str)] = &[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6543"),
            ("PGUSER", "app"),
            ("PGDATABASE", "journal"),
            ("PGSSLMODE", "require"),
            ("PGPASSWORD", "from-env"),
        ];
        let t = target("postgres://", ENV);
        assert_eq!(
            t.to_string(),
            "host=db.internal port=6543 user=app dbname=journal sslmode=require"
        );
        assert_eq!(t.0.config.get_password(), Some(&b"from-env"[..]));
        // The URL wins over every variable, as in libpq.
        let t = target("postgres://u:pw@h:1/d?sslmode=disable", ENV);
        assert_eq!(
            t.to_string(),
            "host=h port=1 user=u dbname=d sslmode=disable"
        );
        assert_eq!(t.0.config.get_password(), Some(&b"pw"[..]));
        // A host without its port takes PGPORT (the driver alone would assume 5432).
        let t = target("postgres://u@h1,h2/d", ENV);
        assert_eq!(
            t.to_string(),
            "host=h1,h2 port=6543,6543 user=u dbname=d sslmode=require"
        );
        let t = target("postgres://u@h/d", &[]);
        assert_eq!(
            t.to_string(),
            "host=h port=5432 user=u dbname=d sslmode=disable"
        );
        assert_eq!(
            t.0.config.get_connect_timeout(),
            Some(&Duration::from_secs(5))
        );
    }

    #[test]
    fn a_unix_socket_folder_is_a_host_and_never_uses_tls() {
        const ENV: &[(&str, &str)] = &[
            ("PGHOST", "/cloudsql/proj:us-east4:db"),
            ("PGUSER", "app"),
            ("PGSSLMODE", "verify-full"),
        ];
        let t = target("postgres://", ENV);
        assert_eq!(
            t.to_string(),
            "host=/cloudsql/proj:us-east4:db port=5432 user=app dbname=app sslmode=disable"
        );
        assert!(t.0.tls.is_none());
        let t = target("postgres://app@%2Frun%2Fpg/j", &[]);
        assert_eq!(
            t.to_string(),
            "host=/run/pg port=5432 user=app dbname=j sslmode=disable"
        );
        let t = target("postgres:///j?host=/run/pg&user=app&port=5433", &[]);
        assert_eq!(
            t.to_string(),
            "host=/run/pg port=5433 user=app dbname=j sslmode=disable"
        );
    }

    #[test]
    fn what_can_never_work_is_named() {
        assert!(refused("postgres://", &[("PGHOST", "h")]).contains("PGUSER"));
        assert!(refused("postgres://u@/d", &[]).contains("PGHOST"));
        assert!(refused("postgres://u@h/d", &[("PGPORT", "x")]).contains("PGPORT"));
        assert!(refused("postgres://u@h/d", &[("PGSSLMODE", "always")]).contains("sslmode"));
        assert!(refused("postgres://u@h/d?sslmode=yes", &[]).contains("sslmode"));
        assert!(refused("postgres://u@h/d", &[("PGCONNECT_TIMEOUT", "0")])
            .contains("PGCONNECT_TIMEOUT"));
        assert!(
            refused("postgres://u@h/d", &[("PGPASSFILE", "/no/such/pgpass")])
                .contains("PGPASSFILE")
        );
        let both = new_target("postgres://u:pw@h/d", &[], Some("file")).unwrap_err();
        assert!(both.to_string().contains("keep one"), "{both}");
    }

    #[test]
    fn the_password_comes_from_the_file_then_pgpassword_then_pgpass() {
        let t = new_target("postgres://u@h/d", &[("PGPASSWORD", "env")], Some("file")).unwrap();
        assert_eq!(t.0.config.get_password(), Some(&b"file"[..]));

        let dir = tempfile::tempdir().unwrap();
        let pgpass = dir.path().join("pgpass");
        std::fs::write(
            &pgpass,
            "# comment\nother:*:*:*:no\nh:5432:d:u:pa\\:ss\\\\word:trailing\n*:*:*:*:any\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = pgpass.to_str().unwrap().to_string();
        let env = move |name: &str| (name == "PGPASSFILE").then(|| path.clone());
        let sources = Sources {
            env: &env,
            password: None,
        };
        let t = Target::new("postgres://u@h/d", &sources).unwrap();
        assert_eq!(t.0.config.get_password(), Some(&b"pa:ss\\word"[..]));
        let t = Target::new("postgres://x@elsewhere/d", &sources).unwrap();
        assert_eq!(t.0.config.get_password(), Some(&b"any"[..]));
        // libpq ignores a file others may read; this refuses to start instead.
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Target::new("postgres://u@h/d", &sources).unwrap_err();
        assert!(e.to_string().contains("group or world"), "{e}");
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "localhost:5432:*:app:one\n/cloudsql/p\\:r\\:i:*:*:app:two\n";
        assert_eq!(
            pgpass_lookup(text, ["localhost", "5432", "x", "app"]),
            Some("one".into())
        );
        assert_eq!(pgpass_lookup(text, ["localhost", "5433", "x", "app"]), None);
        assert_eq!(
            pgpass_lookup(text, ["/cloudsql/p:r:i", "5432", "db", "app"]),
            Some("two".into())
        );
        // A field must match whole, not as a prefix.
        assert_eq!(
            pgpass_lookup("h:5432:d:appx:no\n", ["h", "5432", "d", "app"]),
            None
        );
        assert_eq!(
            pgpass_lookup("h:5432:d:app\n", ["h", "5432", "d", "app"]),
            None
        );
    }
}
