//! Settings from the config file, the environment and flags, validated once at start-up.
//!
//! Precedence: flag > env (both via clap) > config file > default. Every problem is a
//! [`StartupError`] that names the setting, so the process refuses to start instead of serving wrong.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;
use crate::cli::ServeArgs;
use crate::forward::Settings as ForwardSettings;
use crate::journal::JournalUrl;
use crate::keyring::{KeyRing, Secret};
use crate::logging::LogFormat;
use crate::operator_file;
use crate::server::limits::Limits;
use crate::server::tls::TlsFiles;
use crate::templates::TemplateSettings;
use crate::twilio::Role;
use crate::upstream::{Settings as UpstreamSettings, SignatureMode as UpstreamSignature};
use crate::webhook::PublicUrl;

/// Why the process will not start. Always names the offending setting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting has a value we cannot use.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting, as the user spells it (flag or config key).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The reader's or parser's message.
        message: String,
    },
    /// The template set failed to load or lint.
    #[error("templates: {0}")]
    Templates(String),
    /// The listener could not be bound.
    #[error("listen {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        message: String,
    },
    /// TLS certificate or key unusable.
    #[error("tls: {0}")]
    Tls(String),
}

fn invalid(setting: &'static str, message: impl Into<String>) -> StartupError {
    StartupError::Invalid {
        setting,
        message: message.into(),
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Primary or fallback.
    pub role: Role,
    /// Template root holding `primary/` and `fallback/`.
    pub templates: PathBuf,
    /// The config file read, if any (error messages name it in the command they suggest).
    pub config_file: Option<PathBuf>,
    /// Base URL Twilio signs; `None` rebuilds it from the request.
    pub public_url: Option<PublicUrl>,
    /// Honour X-Forwarded-Proto/Host when rebuilding the URL.
    pub trust_forwarded_headers: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Signing secrets.
    pub keyring: KeyRing,
    /// Template settings shared with `check`.
    pub template_settings: TemplateSettings,
    /// Resource bounds.
    pub limits: Limits,
    /// HTTPS, when set.
    pub tls: Option<TlsFiles>,
    /// Reload when the template (or TLS) files change, not only on SIGHUP.
    pub watch: bool,
    /// The webhook journal, when set.
    pub journal: Option<JournalConfig>,
    /// Store and forward to an internal URL, when set (needs the journal).
    pub forward: Option<ForwardSettings>,
    /// Upstream mode, when set (primary only).
    pub upstream: Option<UpstreamSettings>,
}

/// Where and how webhooks are journaled.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The store.
    pub url: JournalUrl,
    /// How long a request waits for its commit.
    pub timeout: Duration,
    /// How long events are kept: delivered ones when forwarding, all of them otherwise.
    pub retention: Duration,
    /// Where events the journal could not take before exit are written (and taken back at start).
    pub spill_dir: Option<PathBuf>,
}

/// The config file's shape. Unknown keys are an error, so a typo cannot silently do nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    role: Option<String>,
    templates: Option<PathBuf>,
    public_url: Option<String>,
    log_format: Option<String>,
    trust_forwarded_headers: Option<bool>,
    auth_token_file: Option<PathBuf>,
    secondary_auth_token_file: Option<PathBuf>,
    drain_timeout: Option<f64>,
    lame_duck: Option<f64>,
    watch: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    journal: FileJournal,
    #[serde(default)]
    forward: FileForward,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    extra_params: Vec<String>,
    #[serde(default)]
    accounts: BTreeMap<String, FileSecretRef>,
    #[serde(default)]
    shared_keys: BTreeMap<String, FileSecretRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<usize>,
    header_timeout: Option<f64>,
    request_timeout: Option<f64>,
    max_concurrency: Option<usize>,
    max_connections: Option<usize>,
    max_body_reads: Option<usize>,
    body_buffer_bytes: Option<usize>,
    min_body_rate: Option<u64>,
    body_grace: Option<f64>,
    idle_timeout: Option<f64>,
    max_connection_age: Option<f64>,
    max_h2_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJournal {
    url: Option<String>,
    timeout: Option<f64>,
    retention: Option<String>,
    spill_dir: Option<PathBuf>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForward {
    to: Option<String>,
    concurrency: Option<usize>,
    timeout: Option<f64>,
    max_backoff: Option<f64>,
    breaker_cooldown: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    url: Option<String>,
    paths: Option<Vec<String>>,
    local_paths: Option<Vec<String>>,
    budget: Option<f64>,
    connect_timeout: Option<f64>,
    max_in_flight: Option<usize>,
    signature: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<f64>,
    breaker_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Where a secret lives: a file or an environment variable, never the config file itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecretRef {
    file: Option<PathBuf>,
    env: Option<String>,
    secondary_file: Option<PathBuf>,
    secondary_env: Option<String>,
}

/// Reads environment variables; a trait object so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The real process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The config file `serve` and `check` read when `--config` is not given, if it exists in the
/// working directory: the shipped templates name its `[vars]`, so a fresh clone works as is.
pub const DEFAULT_CONFIG_FILE: &str = "twiml-failover.toml";

/// Fills in `./twiml-failover.toml` when no config file was given and it exists; returns the path
/// it filled in, so the caller can say so.
pub fn discover_config_file(given: &mut Option<PathBuf>) -> Option<PathBuf> {
    if given.is_some() {
        return None;
    }
    let default = PathBuf::from(DEFAULT_CONFIG_FILE);
    if !default.is_file() {
        return None;
    }
    *given = Some(default.clone());
    Some(default)
}

fn read_file_config(path: &Path) -> Result<FileConfig, StartupError> {
    let text = operator_file::read_text(path, operator_file::MAX_DOCUMENT_BYTES).map_err(|e| {
        StartupError::ConfigFile {
            path: path.to_owned(),
            message: e.reason(),
        }
    })?;
    toml::from_str(&text).map_err(|e| StartupError::ConfigFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_secret_file(setting: &'static str, path: &Path) -> Result<Secret, StartupError> {
    let text = operator_file::read_text(path, operator_file::MAX_SECRET_BYTES)
        .map_err(|e| invalid(setting, format!("cannot read {e}")))?;
    let secret = Secret::new(&text);
    if secret.is_empty() {
        return Err(invalid(setting, format!("{} is empty", path.display())));
    }
    Ok(secret)
}

fn env_secret(env: EnvLookup<'_>, name: &str) -> Option<Secret> {
    env(name).map(|v| Secret::new(&v)).filter(|s| !s.is_empty())
}

fn seconds(setting: &'static str, value: f64) -> Result<Duration, StartupError> {
    if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
        return Err(invalid(
            setting,
            "must be a number of seconds above 0 and at most 3600",
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// `value` checked like [`seconds`], or `default` when it is not set.
fn seconds_or(
    setting: &'static str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, StartupError> {
    value.map_or(Ok(default), |s| seconds(setting, s))
}

/// Like [`seconds`], but 0 (off) is allowed.
fn seconds_or_zero(setting: &'static str, value: f64) -> Result<Duration, StartupError> {
    if value == 0.0 {
        return Ok(Duration::ZERO);
    }
    seconds(setting, value)
}

fn positive(setting: &'static str, value: usize) -> Result<usize, StartupError> {
    if value == 0 {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

impl Config {
    /// Merges flags/env (`args`), the config file they name, and defaults into a validated config,
    /// one section at a time (in this order, so the first problem reported is stable).
    pub fn load(args: &ServeArgs, env: EnvLookup<'_>) -> Result<Config, StartupError> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let listen = listen(args, &file)?;
        let role = role(args, &file)?;
        let log_format = log_format(args, &file)?;
        let templates = template_dir(args, &file)?;
        let public_url = public_url(args, &file)?;
        let keyring = load_keyring(args, &file, env)?;
        let limits = limits(args, &file)?;
        let tls = tls_files(args, &file)?;
        let journal = journal_config(args, &file, env)?;
        let forward = forward_settings(args, &file, journal.as_ref())?;
        let upstream = upstream_settings(args, &file, role)?;
        let trust_forwarded_headers = args
            .trust_forwarded_headers
            .or(file.trust_forwarded_headers)
            .unwrap_or(false);
        let watch = args.watch.or(file.watch).unwrap_or(true);
        let template_settings = template_settings_from(file.vars, file.extra_params)?;
        Ok(Config {
            journal,
            forward,
            listen,
            role,
            templates,
            config_file: args.config.clone(),
            public_url,
            trust_forwarded_headers,
            log_format,
            keyring,
            template_settings,
            limits,
            tls,
            upstream,
            watch,
        })
    }
}

/// `--listen`: an IP:port address.
fn listen(args: &ServeArgs, file: &FileConfig) -> Result<SocketAddr, StartupError> {
    let listen_raw = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    listen_raw.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{listen_raw:?} is not an IP:port address"),
        )
    })
}

/// `--role`: primary or fallback.
fn role(args: &ServeArgs, file: &FileConfig) -> Result<Role, StartupError> {
    let raw = args.role.as_deref().or(file.role.as_deref());
    one_of(
        "role",
        "role",
        raw.unwrap_or("primary"),
        &[("primary", Role::Primary), ("fallback", Role::Fallback)],
    )
}

/// `--log-format`: text or json.
fn log_format(args: &ServeArgs, file: &FileConfig) -> Result<LogFormat, StartupError> {
    let raw = args.log_format.as_deref().or(file.log_format.as_deref());
    one_of(
        "log-format",
        "format",
        raw.unwrap_or("text"),
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    )
}

/// The choice `value` names, or an error listing the choices: `"x" is not a role (primary or
/// fallback)`.
fn one_of<T: Copy>(
    setting: &'static str,
    what: &str,
    value: &str,
    choices: &[(&str, T)],
) -> Result<T, StartupError> {
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == value) {
        return Ok(*choice);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    Err(invalid(
        setting,
        format!("{value:?} is not a {what} ({})", names.join(" or ")),
    ))
}

/// `--templates`: a readable directory.
fn template_dir(args: &ServeArgs, file: &FileConfig) -> Result<PathBuf, StartupError> {
    let given = args.templates.clone().or(file.templates.clone());
    let templates = given
        .clone()
        .unwrap_or_else(|| PathBuf::from("twiml-templates"));
    if !templates.is_dir() {
        let message =
            match given {
                Some(_) => format!(
                "{} is not a readable directory (from --templates, TWIML_FAILOVER_TEMPLATES or \
                 `templates` in the config); point it at the folder holding primary/ and fallback/",
                templates.display()
            ),
                None => format!(
                "no --templates given, and no twiml-templates/ folder in {}: start serve where \
                 twiml-templates/ is, or give the folder holding primary/ and fallback/ with \
                 --templates DIR (TWIML_FAILOVER_TEMPLATES, `templates` in the config)",
                std::env::current_dir()
                    .map_or_else(|_| "the working directory".into(), |d| d.display().to_string())
            ),
            };
        return Err(invalid("templates", message));
    }
    Ok(templates)
}

/// `--public-url`, when set.
fn public_url(args: &ServeArgs, file: &FileConfig) -> Result<Option<PublicUrl>, StartupError> {
    args.public_url
        .as_deref()
        .or(file.public_url.as_deref())
        .map(|raw| PublicUrl::parse(raw).map_err(|m| invalid("public-url", m)))
        .transpose()
}

/// The `--max-*`, `--*-timeout` and body-rate settings, each checked, then checked together.
fn limits(args: &ServeArgs, file: &FileConfig) -> Result<Limits, StartupError> {
    let defaults = Limits::default();
    let limits = Limits {
        max_body_bytes: positive(
            "max-body-bytes",
            args.max_body_bytes
                .or(file.limits.max_body_bytes)
                .unwrap_or(defaults.max_body_bytes),
        )?,
        header_timeout: seconds_or(
            "header-timeout",
            args.header_timeout.or(file.limits.header_timeout),
            defaults.header_timeout,
        )?,
        request_timeout: seconds_or(
            "request-timeout",
            args.request_timeout.or(file.limits.request_timeout),
            defaults.request_timeout,
        )?,
        max_concurrency: positive(
            "max-concurrency",
            args.max_concurrency
                .or(file.limits.max_concurrency)
                .unwrap_or(defaults.max_concurrency),
        )?,
        max_connections: positive(
            "max-connections",
            args.max_connections
                .or(file.limits.max_connections)
                .unwrap_or(defaults.max_connections),
        )?,
        drain_timeout: seconds_or(
            "drain-timeout",
            args.drain_timeout.or(file.drain_timeout),
            defaults.drain_timeout,
        )?,
        tls_handshake_timeout: defaults.tls_handshake_timeout,
        lame_duck: match args.lame_duck.or(file.lame_duck) {
            Some(s) => seconds_or_zero("lame-duck", s)?,
            None => defaults.lame_duck,
        },
        max_body_reads: positive(
            "max-body-reads",
            args.max_body_reads
                .or(file.limits.max_body_reads)
                .unwrap_or(defaults.max_body_reads),
        )?,
        body_buffer_bytes: positive(
            "body-buffer-bytes",
            args.body_buffer_bytes
                .or(file.limits.body_buffer_bytes)
                .unwrap_or(defaults.body_buffer_bytes),
        )?,
        min_body_rate: args
            .min_body_rate
            .or(file.limits.min_body_rate)
            .unwrap_or(defaults.min_body_rate),
        body_grace: seconds_or(
            "body-grace",
            args.body_grace.or(file.limits.body_grace),
            defaults.body_grace,
        )?,
        idle_timeout: seconds_or(
            "idle-timeout",
            args.idle_timeout.or(file.limits.idle_timeout),
            defaults.idle_timeout,
        )?,
        max_connection_age: seconds_or(
            "max-connection-age",
            args.max_connection_age.or(file.limits.max_connection_age),
            defaults.max_connection_age,
        )?,
        max_h2_streams: match args.max_h2_streams.or(file.limits.max_h2_streams) {
            Some(0) => return Err(invalid("max-h2-streams", "must be at least 1")),
            Some(n) => n,
            None => defaults.max_h2_streams,
        },
    };
    if limits.body_buffer_bytes < limits.max_body_bytes {
        return Err(invalid(
            "body-buffer-bytes",
            "must be at least --max-body-bytes, or no full-size body could be read",
        ));
    }
    Ok(limits)
}

/// `--tls-cert` and `--tls-key`: both or neither.
fn tls_files(args: &ServeArgs, file: &FileConfig) -> Result<Option<TlsFiles>, StartupError> {
    match (
        args.tls_cert.clone().or(file.tls.cert.clone()),
        args.tls_key.clone().or(file.tls.key.clone()),
    ) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("tls-key", "--tls-cert needs --tls-key")),
        (None, Some(_)) => Err(invalid("tls-cert", "--tls-key needs --tls-cert")),
    }
}

/// Journal retention when `--journal-retention` is not given.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// The `--journal-*` settings, validated; `None` without `--journal`.
fn journal_config(
    args: &ServeArgs,
    file: &FileConfig,
    env: EnvLookup<'_>,
) -> Result<Option<JournalConfig>, StartupError> {
    let retention = match args
        .journal_retention
        .as_deref()
        .or(file.journal.retention.as_deref())
    {
        Some(raw) => retention(raw)?,
        None => DEFAULT_RETENTION,
    };
    let spill_dir = args
        .journal_spill_dir
        .clone()
        .or(file.journal.spill_dir.clone());
    let password_file = args
        .journal_password_file
        .clone()
        .or(file.journal.password_file.clone());
    let Some(raw) = args.journal.as_deref().or(file.journal.url.as_deref()) else {
        if spill_dir.is_some() {
            return Err(invalid(
                "journal-spill-dir",
                "needs --journal: it holds journal events",
            ));
        }
        if password_file.is_some() {
            return Err(invalid(
                "journal-password-file",
                "needs --journal: it is the journal's password",
            ));
        }
        return Ok(None);
    };
    if let Some(dir) = &spill_dir {
        crate::journal::spill::prepare_dir(dir).map_err(|e| {
            invalid(
                "journal-spill-dir",
                format!("{} is not a writable directory: {e}", dir.display()),
            )
        })?;
    }
    Ok(Some(JournalConfig {
        url: journal_url(raw, password_file.as_deref(), env)?,
        timeout: seconds_or(
            "journal-timeout",
            args.journal_timeout.or(file.journal.timeout),
            Duration::from_secs(1),
        )?,
        retention,
        spill_dir,
    }))
}

/// A journal URL completed as libpq would complete it: what a PostgreSQL URL leaves out from the
/// `PG*` variables in `env`, the password from `password_file` (read now, once) when given.
pub fn journal_url(
    raw: &str,
    password_file: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<JournalUrl, StartupError> {
    let password = password_file
        .map(|path| read_secret_file("journal-password-file", path))
        .transpose()?
        .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned());
    let sources = crate::journal::postgres::Sources { env, password };
    JournalUrl::with_sources(raw, &sources).map_err(|m| {
        // The password file's own problems name it; everything else is the URL's (or PG*'s).
        if m.contains("password file") {
            invalid("journal-password-file", m)
        } else {
            invalid("journal", m)
        }
    })
}

/// The `--forward-*` settings, validated; `None` without `--forward-to`.
fn forward_settings(
    args: &ServeArgs,
    file: &FileConfig,
    journal: Option<&JournalConfig>,
) -> Result<Option<ForwardSettings>, StartupError> {
    let Some(url) = args.forward_to.as_deref().or(file.forward.to.as_deref()) else {
        return Ok(None);
    };
    let url = forward_url(url).map_err(|m| invalid("forward-to", m))?;
    let Some(journal) = journal else {
        return Err(invalid(
            "forward-to",
            "needs --journal: events are forwarded from the journal",
        ));
    };
    let retention = journal.retention;
    let defaults = ForwardSettings::new(url);
    let cap = seconds_or(
        "forward-max-backoff",
        args.forward_max_backoff.or(file.forward.max_backoff),
        defaults.backoff.cap,
    )?;
    Ok(Some(ForwardSettings {
        concurrency: positive(
            "forward-concurrency",
            args.forward_concurrency
                .or(file.forward.concurrency)
                .unwrap_or(defaults.concurrency),
        )?,
        timeout: seconds_or(
            "forward-timeout",
            args.forward_timeout.or(file.forward.timeout),
            defaults.timeout,
        )?,
        backoff: Backoff {
            base: defaults.backoff.base.min(cap),
            cap,
        },
        breaker_cooldown: seconds_or(
            "forward-breaker-cooldown",
            args.forward_breaker_cooldown
                .or(file.forward.breaker_cooldown),
            defaults.breaker_cooldown,
        )?,
        retention,
        ..defaults
    }))
}

/// The `--upstream-*` settings, validated; `None` without `--upstream`.
fn upstream_settings(
    args: &ServeArgs,
    file: &FileConfig,
    role: Role,
) -> Result<Option<UpstreamSettings>, StartupError> {
    let f = &file.upstream;
    let Some(url) = args.upstream.as_deref().or(f.url.as_deref()) else {
        return Ok(None);
    };
    if role != Role::Primary {
        return Err(invalid(
            "upstream",
            "only with --role primary: the fallback answers when the primary's cloud is gone",
        ));
    }
    let url = forward_url(url).map_err(|m| invalid("upstream", m))?;
    let mut s = UpstreamSettings::new(url);
    let list = |raw: &str| {
        raw.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    if let Some(paths) = args.upstream_paths.as_deref().map(list).or(f.paths.clone()) {
        s.paths = paths;
    }
    if let Some(paths) = args
        .upstream_local_paths
        .as_deref()
        .map(list)
        .or(f.local_paths.clone())
    {
        s.local_paths = paths;
    }
    if let Some(v) = args.upstream_budget.or(f.budget) {
        s.budget = seconds("upstream-budget", v)?;
    }
    if let Some(v) = args.upstream_connect_timeout.or(f.connect_timeout) {
        s.connect_timeout = seconds("upstream-connect-timeout", v)?;
    }
    if let Some(n) = args.upstream_max_in_flight.or(f.max_in_flight) {
        s.max_in_flight = positive("upstream-max-in-flight", n)?;
    }
    if let Some(mode) = args
        .upstream_signature
        .as_deref()
        .or(f.signature.as_deref())
    {
        s.signature =
            UpstreamSignature::parse(mode).map_err(|m| invalid("upstream-signature", m))?;
    }
    s.tls.ca_file = args.upstream_ca_file.clone().or(f.ca_file.clone());
    s.tls.client_cert = match (
        args.upstream_client_cert.clone().or(f.client_cert.clone()),
        args.upstream_client_key.clone().or(f.client_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "upstream-client-key",
                "--upstream-client-cert needs it",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "upstream-client-cert",
                "--upstream-client-key needs it",
            ))
        }
    };
    if let Some(n) = args.upstream_breaker_failures.or(f.breaker_failures) {
        s.breaker_failures =
            u32::try_from(positive("upstream-breaker-failures", n as usize)?).unwrap_or(u32::MAX);
    }
    if let Some(v) = args.upstream_breaker_cooldown.or(f.breaker_cooldown) {
        s.breaker_cooldown = seconds("upstream-breaker-cooldown", v)?;
    }
    s.breaker_ratio = args.upstream_breaker_ratio.or(f.breaker_ratio);
    if let Some((setting, message)) = s.problem() {
        return Err(invalid(setting, message));
    }
    Ok(Some(s))
}

/// Checks a forward target: an absolute http(s) URL without credentials or fragment.
pub fn forward_url(raw: &str) -> Result<String, String> {
    crate::net::url::Target::parse(raw).map(|t| t.url)
}

fn retention(raw: &str) -> Result<Duration, StartupError> {
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if d >= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err(invalid("journal-retention", "must be at least 1m")),
        Err(e) => Err(invalid(
            "journal-retention",
            format!("{raw:?}: {e} (use e.g. 7d, 12h, 90m)"),
        )),
    }
}

/// What `journal replay` needs from the config file and environment: the signing keys (auth
/// token from `auth_token_file` or `TWILIO_AUTH_TOKEN`, subaccounts from `[accounts]`) and the
/// configured forward target.
pub fn load_replay_settings(
    path: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<(KeyRing, Option<String>), StartupError> {
    let file = match path {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let keyring = load_keyring(&ServeArgs::default(), &file, env)?;
    Ok((keyring, file.forward.to.clone()))
}

/// Reads only the `[journal] url` and `password_file` of a config file (for the `journal`
/// commands).
pub fn load_journal_url(path: &Path) -> Result<(Option<String>, Option<PathBuf>), StartupError> {
    let journal = read_file_config(path)?.journal;
    Ok((journal.url, journal.password_file))
}

/// Reads only the template-related part of a config file (for `check`).
pub fn load_template_settings(path: Option<&Path>) -> Result<TemplateSettings, StartupError> {
    let file = match path {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    template_settings_from(file.vars, file.extra_params)
}

fn template_settings_from(
    vars: BTreeMap<String, String>,
    extra_params: Vec<String>,
) -> Result<TemplateSettings, StartupError> {
    TemplateSettings::new(vars, extra_params).map_err(|m| invalid("vars", m))
}

fn load_keyring(
    args: &ServeArgs,
    file: &FileConfig,
    env: EnvLookup<'_>,
) -> Result<KeyRing, StartupError> {
    let primary = match args
        .auth_token_file
        .as_deref()
        .or(file.auth_token_file.as_deref())
    {
        Some(path) => Some(read_secret_file("auth-token-file", path)?),
        None => env_secret(env, "TWILIO_AUTH_TOKEN"),
    };
    let Some(primary) = primary else {
        return Err(invalid(
            "TWILIO_AUTH_TOKEN",
            "no auth token: set TWILIO_AUTH_TOKEN or --auth-token-file (auth_token_file in the config)",
        ));
    };
    let secondary = match args
        .secondary_auth_token_file
        .as_deref()
        .or(file.secondary_auth_token_file.as_deref())
    {
        Some(path) => Some(read_secret_file("secondary-auth-token-file", path)?),
        None => env_secret(env, "TWILIO_SECONDARY_AUTH_TOKEN"),
    };

    let mut accounts = HashMap::new();
    for (sid, reference) in &file.accounts {
        if !(sid.starts_with("AC")
            && sid.len() == 34
            && sid.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(invalid(
                "accounts",
                format!("{sid:?} is not an AccountSid (AC + 32 characters)"),
            ));
        }
        let mut tokens = vec![resolve_secret(
            "accounts",
            reference.file.as_deref(),
            reference.env.as_deref(),
            env,
        )?
        .ok_or_else(|| invalid("accounts", format!("{sid}: set file or env")))?];
        if let Some(second) = resolve_secret(
            "accounts",
            reference.secondary_file.as_deref(),
            reference.secondary_env.as_deref(),
            env,
        )? {
            tokens.push(second);
        }
        accounts.insert(sid.clone(), tokens);
    }

    let mut shared_keys = HashMap::new();
    for (id, reference) in &file.shared_keys {
        if reference.secondary_file.is_some() || reference.secondary_env.is_some() {
            return Err(invalid(
                "shared_keys",
                format!("{id}: a shared key has one secret; add a second key id to rotate"),
            ));
        }
        let secret = resolve_secret(
            "shared_keys",
            reference.file.as_deref(),
            reference.env.as_deref(),
            env,
        )?
        .ok_or_else(|| invalid("shared_keys", format!("{id}: set file or env")))?;
        shared_keys.insert(id.clone(), secret);
    }

    Ok(KeyRing {
        primary: Some(primary),
        secondary,
        accounts,
        shared_keys,
    })
}

fn resolve_secret(
    setting: &'static str,
    file: Option<&Path>,
    env_name: Option<&str>,
    env: EnvLookup<'_>,
) -> Result<Option<Secret>, StartupError> {
    match (file, env_name) {
        (Some(_), Some(_)) => Err(invalid(setting, "give file or env, not both")),
        (Some(path), None) => read_secret_file(setting, path).map(Some),
        (None, Some(name)) => env_secret(env, name)
            .map(Some)
            .ok_or_else(|| invalid(setting, format!("environment variable {name} is not set"))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(token: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name| match name {
            "TWILIO_AUTH_TOKEN" => token.map(String::from),
            "SUB_TOKEN" => Some("sub".into()),
            _ => None,
        }
    }

    fn args() -> ServeArgs {
        ServeArgs {
            templates: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("twiml-templates")),
            ..ServeArgs::default()
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn message(result: Result<Config, StartupError>) -> String {
        result.expect_err("should refuse to start").to_string()
    }

    #[test]
    fn connection_and_body_bounds_from_flag_or_file() {
        let env = env_with(Some("t"));
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "lame_duck = 0\n[limits]\nmax_body_reads = 7\nbody_buffer_bytes = 1048576\n\
             min_body_rate = 0\nbody_grace = 0.5\nidle_timeout = 9\nmax_connection_age = 60\n\
             max_h2_streams = 4\n",
        );
        let from_file = ServeArgs {
            config: Some(file),
            ..args()
        };
        let l = Config::load(&from_file, &env).unwrap().limits;
        assert_eq!(l.lame_duck, Duration::ZERO);
        assert_eq!((l.max_body_reads, l.body_buffer_bytes), (7, 1 << 20));
        assert_eq!(
            (l.min_body_rate, l.body_grace),
            (0, Duration::from_millis(500))
        );
        assert_eq!(l.idle_timeout, Duration::from_secs(9));
        assert_eq!(l.max_connection_age, Duration::from_secs(60));
        assert_eq!(l.max_h2_streams, 4);
        let flags = ServeArgs {
            lame_duck: Some(3.0),
            max_h2_streams: Some(8),
            ..from_file
        };
        let l = Config::load(&flags, &env).unwrap().limits;
        assert_eq!((l.lame_duck, l.max_h2_streams), (Duration::from_secs(3), 8));
        for (bad, setting) in [
            (
                ServeArgs {
                    lame_duck: Some(-1.0),
                    ..args()
                },
                "lame-duck:",
            ),
            (
                ServeArgs {
                    max_body_reads: Some(0),
                    ..args()
                },
                "max-body-reads:",
            ),
            (
                ServeArgs {
                    body_buffer_bytes: Some(1000),
                    ..args()
                },
                "body-buffer-bytes:",
            ),
            (
                ServeArgs {
                    body_grace: Some(0.0),
                    ..args()
                },
                "body-grace:",
            ),
            (
                ServeArgs {
                    idle_timeout: Some(0.0),
                    ..args()
                },
                "idle-timeout:",
            ),
            (
                ServeArgs {
                    max_connection_age: Some(f64::NAN),
                    ..args()
                },
                "max-connection-age:",
            ),
            (
                ServeArgs {
                    max_h2_streams: Some(0),
                    ..args()
                },
                "max-h2-streams:",
            ),
        ] {
            assert!(
                message(Config::load(&bad, &env)).starts_with(setting),
                "{setting}"
            );
        }
    }

    #[test]
    fn journal_from_flag_or_file() {
        let env = env_with(Some("t"));
        assert!(Config::load(&args(), &env).unwrap().journal.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "[journal]\nurl = \"sqlite:///var/j.db\"\ntimeout = 0.25\n",
        );
        let c = Config::load(
            &ServeArgs {
                config: Some(file.clone()),
                ..args()
            },
            &env,
        )
        .unwrap();
        let j = c.journal.unwrap();
        assert_eq!(j.url.to_string(), "sqlite:///var/j.db");
        assert_eq!(j.timeout, Duration::from_millis(250));
        let flag = ServeArgs {
            config: Some(file),
            journal: Some("postgres://u:pw@db/j".into()),
            ..args()
        };
        let j = Config::load(&flag, &env).unwrap().journal.unwrap();
        assert_eq!(j.url.to_string(), "postgres://u:***@db/j");
        let bad = ServeArgs {
            journal: Some("/tmp/j.db".into()),
            ..args()
        };
        assert!(message(Config::load(&bad, &env)).starts_with("journal: "));
        let bad = ServeArgs {
            journal: Some("sqlite:///j.db".into()),
            journal_timeout: Some(0.0),
            ..args()
        };
        assert!(message(Config::load(&bad, &env)).starts_with("journal-timeout: "));
    }

    #[test]
    fn a_postgres_journal_is_completed_from_pg_variables_and_a_password_file() {
        let env = |name: &str| match name {
            "TWILIO_AUTH_TOKEN" => Some("t".to_string()),
            "PGHOST" => Some("/cloudsql/p:r:i".to_string()),
            "PGUSER" => Some("app".to_string()),
            "PGDATABASE" => Some("journal".to_string()),
            _ => None,
        };
        let dir = tempfile::tempdir().unwrap();
        let password = write(&dir, "password", "s3cret\n");
        let with = |journal: &str, file: Option<&Path>| ServeArgs {
            journal: Some(journal.into()),
            journal_password_file: file.map(Path::to_path_buf),
            ..args()
        };
        let j = Config::load(&with("postgres://", Some(&password)), &env)
            .unwrap()
            .journal
            .unwrap();
        assert_eq!(
            j.url.describe(),
            "postgres host=/cloudsql/p:r:i port=5432 user=app dbname=journal sslmode=disable"
        );
        assert!(!format!("{:?}", j.url).contains("s3cret"));
        for (bad, setting) in [
            (
                with("postgres://", Some(&dir.path().join("none"))),
                "journal-password-file: ",
            ),
            (
                with("postgres://u:pw@h/d", Some(&password)),
                "journal-password-file: ",
            ),
            (
                with("sqlite:///var/j.db", Some(&password)),
                "journal-password-file: ",
            ),
            (with("postgres://u@h/d?sslmode=often", None), "journal: "),
            (
                ServeArgs {
                    journal_password_file: Some(password.clone()),
                    ..args()
                },
                "journal-password-file: needs --journal",
            ),
        ] {
            let m = message(Config::load(&bad, &env));
            assert!(m.starts_with(setting), "{m}");
        }
        // The file key works like the flag.
        let file = write(
            &dir,
            "c.toml",
            &format!(
                "[journal]\nurl = \"postgres://\"\npassword_file = {:?}\n",
                password.display().to_string()
            ),
        );
        let c = Config::load(
            &ServeArgs {
                config: Some(file),
                ..args()
            },
            &env,
        )
        .unwrap();
        assert!(c.journal.is_some());
    }

    #[test]
    fn forward_from_flag_or_file() {
        let env = env_with(Some("t"));
        let with_journal = || ServeArgs {
            journal: Some("sqlite:///var/j.db".into()),
            ..args()
        };
        assert!(Config::load(&with_journal(), &env)
            .unwrap()
            .forward
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "[journal]\nretention = \"12h\"\n[forward]\nto = \"https://crm.internal/twilio\"\n\
             concurrency = 2\ntimeout = 3\nmax_backoff = 0.5\nbreaker_cooldown = 7\n",
        );
        let from_file = ServeArgs {
            config: Some(file.clone()),
            ..with_journal()
        };
        let f = Config::load(&from_file, &env).unwrap().forward.unwrap();
        assert_eq!(f.url, "https://crm.internal/twilio");
        assert_eq!(f.concurrency, 2);
        assert_eq!(f.timeout, Duration::from_secs(3));
        // The first retry's ceiling never exceeds the cap.
        assert_eq!(f.backoff.base, Duration::from_millis(500));
        assert_eq!(f.backoff.cap, Duration::from_millis(500));
        assert_eq!(f.breaker_cooldown, Duration::from_secs(7));
        assert_eq!(f.retention, Duration::from_secs(12 * 3600));
        let flags = ServeArgs {
            forward_to: Some("http://127.0.0.1:9000/in".into()),
            forward_concurrency: Some(9),
            journal_retention: Some("30d".into()),
            ..from_file
        };
        let f = Config::load(&flags, &env).unwrap().forward.unwrap();
        assert_eq!(
            (f.url.as_str(), f.concurrency),
            ("http://127.0.0.1:9000/in", 9)
        );
        assert_eq!(f.retention, Duration::from_secs(30 * 86_400));
        let defaults = ServeArgs {
            forward_to: Some("http://127.0.0.1:9000/in".into()),
            ..with_journal()
        };
        let f = Config::load(&defaults, &env).unwrap().forward.unwrap();
        assert_eq!(f.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(f.backoff.cap, Duration::from_secs(300));

        for (bad, setting) in [
            (
                ServeArgs {
                    forward_to: Some("http://x/in".into()),
                    ..args()
                },
                "forward-to: needs --journal",
            ),
            (
                ServeArgs {
                    forward_to: Some("ftp://x/in".into()),
                    ..with_journal()
                },
                "forward-to: ",
            ),
            (
                ServeArgs {
                    forward_to: Some("http://x/in#frag".into()),
                    ..with_journal()
                },
                "forward-to: ",
            ),
            (
                ServeArgs {
                    forward_to: Some("http://x/in".into()),
                    forward_concurrency: Some(0),
                    ..with_journal()
                },
                "forward-concurrency: ",
            ),
            (
                ServeArgs {
                    journal_retention: Some("soon".into()),
                    ..with_journal()
                },
                "journal-retention: ",
            ),
            (
                ServeArgs {
                    journal_retention: Some("5s".into()),
                    ..with_journal()
                },
                "journal-retention: must be at least",
            ),
            (
                ServeArgs {
                    journal_spill_dir: Some("/proc/no-such-dir".into()),
                    ..with_journal()
                },
                "journal-spill-dir: /proc/no-such-dir is not a writable directory",
            ),
            (
                ServeArgs {
                    journal_spill_dir: Some(std::env::temp_dir()),
                    ..args()
                },
                "journal-spill-dir: needs --journal",
            ),
        ] {
            let m = message(Config::load(&bad, &env));
            assert!(m.starts_with(setting), "{m}");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::load(&args(), &env_with(Some("t"))).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.role, Role::Primary);
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.public_url.is_none());
    }

    #[test]
    fn every_bad_setting_is_named() {
        let env = env_with(Some("t"));
        assert!(message(Config::load(&args(), &env_with(None))).contains("TWILIO_AUTH_TOKEN"));
        let mut a = args();
        a.role = Some("backup".into());
        assert!(message(Config::load(&a, &env)).starts_with("role:"));
        let mut a = args();
        a.templates = Some("/nonexistent/dir".into());
        assert!(message(Config::load(&a, &env)).starts_with("templates:"));
        let mut a = args();
        a.listen = Some("localhost".into());
        assert!(message(Config::load(&a, &env)).starts_with("listen:"));
        let mut a = args();
        a.public_url = Some("https://x.example/voice#ct=100".into());
        assert!(message(Config::load(&a, &env)).starts_with("public-url:"));
        let mut a = args();
        a.log_format = Some("xml".into());
        assert!(message(Config::load(&a, &env)).starts_with("log-format:"));
        let mut a = args();
        a.drain_timeout = Some(-1.0);
        assert!(message(Config::load(&a, &env)).starts_with("drain-timeout:"));
        let mut a = args();
        a.auth_token_file = Some("/nonexistent/token".into());
        assert!(message(Config::load(&a, &env)).starts_with("auth-token-file:"));
        let mut a = args();
        a.tls_cert = Some("c.pem".into());
        assert!(message(Config::load(&a, &env)).starts_with("tls-key:"));
    }

    #[test]
    fn file_env_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let token = write(&dir, "token", "filetoken\n");
        let cfg = write(
            &dir,
            "c.toml",
            &format!(
                "listen = \"0.0.0.0:9000\"\nrole = \"fallback\"\nauth_token_file = {:?}\n\
                 public_url = \"https://fallback.example.net/\"\n\
                 [vars]\nbackup_number = \"+15550100\"\n\
                 [accounts.AC00000000000000000000000000000001]\nenv = \"SUB_TOKEN\"\n\
                 [shared_keys.key1]\nenv = \"SUB_TOKEN\"\n",
                token.display().to_string()
            ),
        );
        let mut a = args();
        a.config = Some(cfg.clone());
        let c = Config::load(&a, &env_with(Some("envtoken"))).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.role, Role::Fallback);
        assert_eq!(c.keyring.primary.as_ref().unwrap().expose(), b"filetoken");
        assert_eq!(
            c.public_url.unwrap().as_str(),
            "https://fallback.example.net"
        );
        assert_eq!(c.template_settings.vars["backup_number"], "+15550100");
        assert_eq!(
            c.keyring.accounts["AC00000000000000000000000000000001"][0].expose(),
            b"sub"
        );
        assert_eq!(c.keyring.shared_keys["key1"].expose(), b"sub");
        // A flag beats the file.
        a.role = Some("primary".into());
        a.listen = Some("127.0.0.1:1".into());
        let c = Config::load(&a, &env_with(Some("envtoken"))).unwrap();
        assert_eq!(c.role, Role::Primary);
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
    }

    #[test]
    fn config_file_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(&dir, "c.toml", "rol = \"fallback\"\n");
        let mut a = args();
        a.config = Some(cfg);
        assert!(message(Config::load(&a, &env_with(Some("t")))).contains("unknown field"));
        let cfg = write(&dir, "d.toml", "[accounts.ACshort]\nenv = \"SUB_TOKEN\"\n");
        a.config = Some(cfg);
        assert!(message(Config::load(&a, &env_with(Some("t")))).starts_with("accounts:"));
        let cfg = write(&dir, "e.toml", "[vars]\n\"bad name\" = \"x\"\n");
        a.config = Some(cfg);
        assert!(message(Config::load(&a, &env_with(Some("t")))).starts_with("vars:"));
    }

    #[test]
    fn public_url_rules() {
        assert!(PublicUrl::parse("ftp://x").is_err());
        assert!(PublicUrl::parse("https://").is_err());
        assert!(PublicUrl::parse("https://u:p@x.example").is_err());
        assert!(PublicUrl::parse("https://x.example?a=1").is_err());
        assert_eq!(
            PublicUrl::parse("https://x.example/twilio/")
                .unwrap()
                .as_str(),
            "https://x.example/twilio"
        );
    }
}
