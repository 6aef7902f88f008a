//! `serve`'s settings, each declared once, and how flags, environment, config file and defaults
//! become each module's own settings, validated once at start-up.
//!
//! A setting is one field of [`ServeArgs`] or of one of its sections, each section declared by the
//! module that owns its settings ([`LimitsSection`], [`TlsSection`], [`ForwardSection`],
//! [`UpstreamSection`]; the journal's here, as its check reads the password file and probes the
//! spill folder): the field's type is the setting's, its doc comment the help, the section's table
//! plus the field's name the config file key (`[upstream] budget`), and the field's name (or its
//! `long`, in a section whose flags carry the table's prefix) the flag (`--upstream-budget`).
//! Where two sections share a key (`timeout`, `url`, `breaker_cooldown`), the field takes the
//! flag's name and a serde `rename` instead, as clap needs one id per argument. Two faces follow
//! from those and are written into the command at run time ([`faces`]), so nothing hand-typed can
//! drift: the environment twin is `TWIML_FAILOVER_` and the flag, and the `[default: …]` of the
//! help is [`ServeArgs::defaults`], each section's read by its owner from its own defaults
//! (`LimitsSection::defaults`, …).
//!
//! Precedence: flag > env (clap) > config file (serde; an unknown key is an error) > default: one
//! derived [`Merge`] of the three layers. Then each section is checked by its owner into its own
//! type, with the checks of [`crate::setting`], every problem a [`StartupError`] naming the setting
//! as the user spells its flag, so the process refuses to start instead of serving wrong.
//!
//! Why clap + serde + the `merge` derive rather than a layering crate (figment, config): clap
//! already puts a flag over its environment twin and names the flag in its errors; a layering
//! crate would read the environment a second time and name settings by its own key paths, where
//! the errors users rely on name the flag; and the file must be read bounded
//! ([`operator_file`]) anyway. What is left to layer is `Option::or` per field, which the derive
//! writes. Not pure: reads the config file, secret files, and probes the spill folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, Args};
use merge::Merge;
use serde::{Deserialize, Serialize};

pub use crate::forward::ForwardSection;
use crate::forward::Settings as ForwardSettings;
use crate::journal::JournalUrl;
use crate::keyring::KeyRing;
use crate::logging::LogFormat;
use crate::operator_file;
use crate::secrets::{self, EnvLookup, KeySources, SecretRef};
use crate::server::limits::{Limits, LimitsSection};
use crate::server::tls::{TlsFiles, TlsSection};
use crate::setting::{given, one_of, seconds, seconds_or_off, secs, unusable, Unusable};
use crate::templates::TemplateSettings;
use crate::twilio::Role;
use crate::upstream::{Settings as UpstreamSettings, UpstreamSection};
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

impl From<Unusable> for StartupError {
    fn from(Unusable { setting, message }: Unusable) -> StartupError {
        StartupError::Invalid { setting, message }
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: std::net::SocketAddr,
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

/// The flags of `serve` (and the settings `check` shares with it), and the config file's shape:
/// the sections are flattened into flags and nested as the file's tables. Every field is optional so
/// that the layers can be merged; a typo in the file is an error.
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(default, deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
#[command(mut_args = faces())]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Which template set answers: primary or fallback.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Template directory holding primary/ and fallback/.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Base URL Twilio is configured with (e.g. https://voice.example.com); signatures are checked
    /// against it plus the request path and query.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Log format: text (tracing-subscriber's default layout, request values quoted) or json.
    /// Lines go to stderr through a non-blocking writer: when it cannot keep up, lines are dropped
    /// and counted (twiml_failover_log_lines_dropped_total), never waited for.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// File holding the primary auth token (instead of TWILIO_AUTH_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// File holding the secondary auth token, accepted too during a rotation.
    #[arg(long, value_name = "PATH")]
    pub secondary_auth_token_file: Option<PathBuf>,
    /// Rebuild the signed URL from X-Forwarded-Proto/Host when --public-url is not set (only behind
    /// a proxy that overwrites them).
    #[arg(long, value_name = "BOOL")]
    pub trust_forwarded_headers: Option<bool>,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<f64>,
    /// Seconds after SIGTERM/SIGINT during which /readyz answers 503 while new connections are
    /// still accepted and served, so load balancers stop sending first; 0 turns it off.
    #[arg(long, value_name = "SECONDS")]
    pub lame_duck: Option<f64>,
    /// Reload templates (and TLS files) when they change on disk, besides on SIGHUP.
    #[arg(long, value_name = "BOOL")]
    pub watch: Option<bool>,
    /// `[limits]`: the server's resource bounds.
    #[command(flatten)]
    #[merge(strategy = Merge::merge)]
    pub limits: LimitsSection,
    /// `[tls]`: HTTPS.
    #[command(flatten)]
    #[merge(strategy = Merge::merge)]
    pub tls: TlsSection,
    /// `[journal]`: the webhook journal.
    #[command(flatten)]
    #[merge(strategy = Merge::merge)]
    pub journal: JournalSection,
    /// `[forward]`: store and forward.
    #[command(flatten)]
    #[merge(strategy = Merge::merge)]
    pub forward: ForwardSection,
    /// `[upstream]`: upstream mode.
    #[command(flatten)]
    #[merge(strategy = Merge::merge)]
    pub upstream: UpstreamSection,
    /// `[vars]`: values every template can use (config file only).
    #[arg(skip)]
    #[merge(strategy = file_only)]
    pub vars: BTreeMap<String, String>,
    /// Custom query parameters templates may use (config file only).
    #[arg(skip)]
    #[merge(strategy = file_only)]
    pub extra_params: Vec<String>,
    /// `[accounts.AC…]`: subaccount tokens, each from a file or an environment variable.
    #[arg(skip)]
    #[merge(strategy = file_only)]
    pub accounts: BTreeMap<String, SecretRef>,
    /// `[shared_keys.ID]`: shared signing keys, each from a file or an environment variable.
    #[arg(skip)]
    #[merge(strategy = file_only)]
    pub shared_keys: BTreeMap<String, SecretRef>,
}

/// `[journal]`: the webhook journal ([`JournalConfig`]).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
pub struct JournalSection {
    /// Journal every verified webhook before answering: sqlite:///path.db or postgres://... .
    #[arg(long = "journal", value_name = "URL")]
    pub url: Option<String>,
    /// Seconds a request waits for its journal commit before answering anyway.
    #[arg(long = "journal-timeout", value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Events older than this are pruned, e.g. 7d, 12h: delivered ones with --forward-to, all of
    /// them without.
    #[arg(long = "journal-retention", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Folder where events the journal could not take are written at exit, and taken back into
    /// the journal at the next start (a local disk, not the journal's; created 0700 if missing);
    /// without it they are lost.
    #[arg(long = "journal-spill-dir", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// File holding the PostgreSQL journal's password, read once at start-up (instead of a
    /// password in the URL, PGPASSWORD or PGPASSFILE; the URL's other parts may come from
    /// PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, PGSSLROOTCERT).
    #[arg(long = "journal-password-file", value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

/// A table only the config file sets: the file's, as flags never hold one.
fn file_only<T: Default + PartialEq>(left: &mut T, right: T) {
    if *left == T::default() {
        *left = right;
    }
}

/// The config file `serve` and `check` read when `--config` is not given, if it exists in the
/// working directory: the shipped templates name its `[vars]`, so a fresh clone works as is.
pub const DEFAULT_CONFIG_FILE: &str = "twiml-failover.toml";

/// The template folder read when `--templates` is not given, relative to the working directory.
pub const DEFAULT_TEMPLATES: &str = "twiml-templates";

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

/// The config file at `path` (nothing set when there is none): every command that reads the file
/// reads it here, bounded, an unknown key an error.
pub fn read_file(path: Option<&Path>) -> Result<ServeArgs, StartupError> {
    let Some(path) = path else {
        return Ok(ServeArgs::default());
    };
    let failed = |message| StartupError::ConfigFile {
        path: path.to_owned(),
        message,
    };
    let text = operator_file::read_text(path, operator_file::MAX_DOCUMENT_BYTES)
        .map_err(|e| failed(e.reason()))?;
    toml::from_str(&text).map_err(|e| failed(e.to_string()))
}

const ROLES: &[(&str, Role)] = &[("primary", Role::Primary), ("fallback", Role::Fallback)];

impl ServeArgs {
    /// Every default, as a flag would give it: the merge's last layer and what `--help` shows.
    /// Read from the owners' own defaults; the others are `serve`'s own.
    pub fn defaults() -> ServeArgs {
        let limits = Limits::default();
        ServeArgs {
            listen: Some("127.0.0.1:8080".into()),
            role: Some(Role::Primary.as_str().into()),
            templates: Some(DEFAULT_TEMPLATES.into()),
            log_format: Some(LogFormat::NAMES[0].0.into()),
            trust_forwarded_headers: Some(false),
            drain_timeout: secs(limits.drain_timeout),
            lame_duck: secs(limits.lame_duck),
            watch: Some(true),
            limits: LimitsSection::defaults(),
            journal: JournalSection {
                timeout: Some(1.0),
                retention: Some("7d".into()),
                ..JournalSection::default()
            },
            forward: ForwardSection::defaults(),
            upstream: UpstreamSection::defaults(),
            ..ServeArgs::default()
        }
    }

    /// Checks every setting (in this order, so the first problem reported is stable).
    fn settle(self, env: EnvLookup<'_>) -> Result<Config, StartupError> {
        let raw = given("listen", self.listen.as_deref())?;
        let listen = raw
            .parse()
            .map_err(|_| unusable("listen", format!("{raw:?} is not an IP:port address")))?;
        let role = one_of("role", "role", self.role.as_deref(), ROLES)?;
        let log_format = one_of(
            "log-format",
            "format",
            self.log_format.as_deref(),
            LogFormat::NAMES,
        )?;
        // The merged default is no given folder: the message says where it looked.
        let named = (self.templates.clone()).filter(|t| t != Path::new(DEFAULT_TEMPLATES));
        let also = "TWIML_FAILOVER_TEMPLATES or `templates` in the config";
        let templates = template_dir(named, also)?;
        let public_url = (self.public_url.as_deref())
            .map(|raw| PublicUrl::parse(raw).map_err(|m| unusable("public-url", m)))
            .transpose()?;
        let keyring = self.keyring(env)?;
        let limits = Limits {
            drain_timeout: seconds("drain-timeout", self.drain_timeout)?,
            lame_duck: seconds_or_off("lame-duck", self.lame_duck)?,
            ..self.limits.settle()?
        };
        let tls = self.tls.settle()?;
        let journal = self.journal.settle(env)?;
        let forward = (self.forward).settle(journal.as_ref().map(|j| j.retention))?;
        Ok(Config {
            upstream: self.upstream.settle(role)?,
            trust_forwarded_headers: given(
                "trust-forwarded-headers",
                self.trust_forwarded_headers,
            )?,
            watch: given("watch", self.watch)?,
            template_settings: template_settings(self.vars, self.extra_params)?,
            tls,
            journal,
            forward,
            listen,
            role,
            templates,
            config_file: self.config,
            public_url,
            log_format,
            keyring,
            limits,
        })
    }

    /// The signing secrets, from the files and variables the settings name ([`KeySources`]).
    pub fn keyring(&self, env: EnvLookup<'_>) -> Result<KeyRing, StartupError> {
        let sources = KeySources {
            auth_token_file: self.auth_token_file.as_deref(),
            secondary_auth_token_file: self.secondary_auth_token_file.as_deref(),
            accounts: &self.accounts,
            shared_keys: &self.shared_keys,
        };
        Ok(sources.keyring(env)?)
    }
}

impl JournalSection {
    /// `None` without `--journal`, which the spill folder and the password file need.
    fn settle(self, env: EnvLookup<'_>) -> Result<Option<JournalConfig>, StartupError> {
        let retention = retention(given("journal-retention", self.retention)?)?;
        let Some(raw) = self.url else {
            if self.spill_dir.is_some() {
                let message = "needs --journal: it holds journal events";
                return Err(unusable("journal-spill-dir", message).into());
            }
            if self.password_file.is_some() {
                let message = "needs --journal: it is the journal's password";
                return Err(unusable("journal-password-file", message).into());
            }
            return Ok(None);
        };
        if let Some(dir) = &self.spill_dir {
            crate::journal::spill::prepare_dir(dir).map_err(|e| {
                let message = format!("{} is not a writable directory: {e}", dir.display());
                unusable("journal-spill-dir", message)
            })?;
        }
        Ok(Some(JournalConfig {
            url: journal_url(&raw, self.password_file.as_deref(), env)?,
            timeout: seconds("journal-timeout", self.timeout)?,
            retention,
            spill_dir: self.spill_dir,
        }))
    }
}

impl Config {
    /// Merges flags/env (`args`), the config file they name, and the defaults, then checks them.
    pub fn load(args: &ServeArgs, env: EnvLookup<'_>) -> Result<Config, StartupError> {
        let mut merged = args.clone();
        merged.merge(read_file(args.config.as_deref())?);
        merged.merge(ServeArgs::defaults());
        merged.settle(env)
    }
}

/// Writes the faces of every `serve` flag that follow from its declaration: the environment
/// twin (`TWIML_FAILOVER_` and the flag) and, at the end of the help, the default
/// ([`ServeArgs::defaults`]).
fn faces() -> impl FnMut(Arg) -> Arg {
    let mut shown = HashMap::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(ServeArgs::defaults()) {
        for (name, value) in table {
            match value {
                toml::Value::Table(section) => shown.extend(section),
                value => drop(shown.insert(name, value)),
            }
        }
    }
    move |arg: Arg| {
        let Some(long) = arg.get_long() else {
            return arg;
        };
        let env = format!("TWIML_FAILOVER_{}", long.replace('-', "_").to_uppercase());
        let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if let Some(value) = shown.get(arg.get_id().as_str()).and_then(show) {
            help = format!("{help} [default: {value}]");
        }
        arg.env(env).help(help)
    }
}

/// A default as `--help` prints it (`25`, `0.5`, `*`); `None` for an empty list.
fn show(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Array(items) if items.is_empty() => None,
        toml::Value::Array(items) => {
            Some(items.iter().filter_map(show).collect::<Vec<_>>().join(","))
        }
        // f64's Display writes 25.0 as `25`.
        toml::Value::Float(f) => Some(f.to_string()),
        other => Some(other.to_string()),
    }
}

/// The template folder: `given` (by `--templates` or, as `also` names them, its other sources),
/// else `twiml-templates` in the working directory; the message says where it looked.
pub fn template_dir(given: Option<PathBuf>, also: &str) -> Result<PathBuf, StartupError> {
    let templates = given.clone().unwrap_or_else(|| DEFAULT_TEMPLATES.into());
    if templates.is_dir() {
        return Ok(templates);
    }
    let fix = "the folder holding primary/ and fallback/";
    let message = match given {
        Some(path) => format!(
            "{} is not a readable directory (from --templates, {also}); point it at {fix}",
            path.display()
        ),
        None => format!(
            "no --templates given, and no {DEFAULT_TEMPLATES}/ folder in {}: run this where \
             {DEFAULT_TEMPLATES}/ is, or give {fix} with --templates DIR ({also})",
            working_directory()
        ),
    };
    Err(unusable("templates", message).into())
}

/// The working directory, for messages that say where a file was looked for.
pub fn working_directory() -> String {
    std::env::current_dir().map_or_else(
        |_| "the working directory".into(),
        |d| d.display().to_string(),
    )
}

fn retention(raw: String) -> Result<Duration, Unusable> {
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if d >= Duration::from_secs(60) => Ok(d),
        Ok(_) => Err(unusable("journal-retention", "must be at least 1m")),
        Err(e) => Err(unusable(
            "journal-retention",
            format!("{raw:?}: {e} (use e.g. 7d, 12h, 90m)"),
        )),
    }
}

/// A journal URL completed as libpq would complete it: what a PostgreSQL URL leaves out from the
/// `PG*` variables in `env`, the password from `password_file` (read now, once) when given.
pub fn journal_url(
    raw: &str,
    password_file: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<JournalUrl, StartupError> {
    let password = password_file
        .map(|path| secrets::read_file("journal-password-file", path))
        .transpose()?
        .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned());
    let sources = crate::journal::postgres::Sources { env, password };
    JournalUrl::with_sources(raw, &sources).map_err(|m| {
        // The password file's own problems name it; everything else is the URL's (or PG*'s).
        if m.contains("password file") {
            unusable("journal-password-file", m).into()
        } else {
            unusable("journal", m).into()
        }
    })
}

/// Checks a forward target: an absolute http(s) URL without credentials or fragment.
pub fn forward_url(raw: &str) -> Result<String, String> {
    crate::net::url::Target::parse(raw).map(|t| t.url)
}

/// `[vars]` and `extra_params` as the templates take them, a problem naming `vars`.
pub fn template_settings(
    vars: BTreeMap<String, String>,
    extra_params: Vec<String>,
) -> Result<TemplateSettings, StartupError> {
    TemplateSettings::new(vars, extra_params).map_err(|m| unusable("vars", m).into())
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    fn env_with(token: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name| match name {
            "TWILIO_AUTH_TOKEN" => token.map(String::from),
            "SUB_TOKEN" => Some("sub".into()),
            _ => None,
        }
    }

    /// `serve` parsed from these flags (as clap reads them), with the shipped templates.
    fn flags(list: &[&str]) -> ServeArgs {
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/twiml-templates");
        // A later --templates replaces the shipped ones.
        let command = ServeArgs::augment_args(clap::Command::new("serve").args_override_self(true));
        let line = [&["serve", "--templates", templates][..], list].concat();
        ServeArgs::from_arg_matches(&command.try_get_matches_from(line).unwrap()).unwrap()
    }

    fn load(list: &[&str]) -> Result<Config, StartupError> {
        Config::load(&flags(list), &env_with(Some("t")))
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn message(result: Result<Config, StartupError>) -> String {
        result.expect_err("should refuse to start").to_string()
    }

    /// Each listed flag line is refused with an error that starts with `starts`.
    fn refused(cases: &[(&[&str], &str)]) {
        for (list, starts) in cases {
            let m = message(load(list));
            assert!(m.starts_with(starts), "{list:?}: {m}");
        }
    }

    #[test]
    fn connection_and_body_bounds_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "lame_duck = 0\n[limits]\nmax_body_reads = 7\nbody_buffer_bytes = 1048576\n\
             min_body_rate = 0\nbody_grace = 0.5\nidle_timeout = 9\nmax_connection_age = 60\n\
             max_h2_streams = 4\n",
        );
        let l = load(&["--config", &file]).unwrap().limits;
        assert_eq!(l.lame_duck, Duration::ZERO);
        assert_eq!((l.max_body_reads, l.body_buffer_bytes), (7, 1 << 20));
        assert_eq!(
            (l.min_body_rate, l.body_grace),
            (0, Duration::from_millis(500))
        );
        assert_eq!(l.idle_timeout, Duration::from_secs(9));
        assert_eq!(l.max_connection_age, Duration::from_secs(60));
        assert_eq!(l.max_h2_streams, 4);
        let flags = [
            "--config",
            &file,
            "--lame-duck",
            "3",
            "--max-h2-streams",
            "8",
        ];
        let l = load(&flags).unwrap().limits;
        assert_eq!((l.lame_duck, l.max_h2_streams), (Duration::from_secs(3), 8));
        refused(&[
            (&["--lame-duck=-1"], "lame-duck:"),
            (&["--max-body-reads", "0"], "max-body-reads:"),
            (&["--body-buffer-bytes", "1000"], "body-buffer-bytes:"),
            (&["--body-grace", "0"], "body-grace:"),
            (&["--idle-timeout", "0"], "idle-timeout:"),
            (&["--max-connection-age", "NaN"], "max-connection-age:"),
            (&["--max-h2-streams", "0"], "max-h2-streams:"),
        ]);
    }

    #[test]
    fn journal_from_flag_or_file() {
        assert!(load(&[]).unwrap().journal.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "[journal]\nurl = \"sqlite:///var/j.db\"\ntimeout = 0.25\n",
        );
        let j = load(&["--config", &file]).unwrap().journal.unwrap();
        assert_eq!(j.url.to_string(), "sqlite:///var/j.db");
        assert_eq!(j.timeout, Duration::from_millis(250));
        let flag = ["--config", &file, "--journal", "postgres://u:pw@db/j"];
        let j = load(&flag).unwrap().journal.unwrap();
        assert_eq!(j.url.to_string(), "postgres://u:***@db/j");
        refused(&[
            (&["--journal", "/tmp/j.db"], "journal: "),
            (
                &["--journal", "sqlite:///j.db", "--journal-timeout", "0"],
                "journal-timeout: ",
            ),
        ]);
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
        let with = |journal: &str, file: Option<&str>| {
            let mut line = vec!["--journal", journal];
            line.extend(
                file.map(|f| ["--journal-password-file", f])
                    .into_iter()
                    .flatten(),
            );
            Config::load(&flags(&line), &env)
        };
        let j = with("postgres://", Some(&password))
            .unwrap()
            .journal
            .unwrap();
        assert_eq!(
            j.url.describe(),
            "postgres host=/cloudsql/p:r:i port=5432 user=app dbname=journal sslmode=disable"
        );
        assert!(!format!("{:?}", j.url).contains("s3cret"));
        let none = dir.path().join("none").display().to_string();
        for (bad, setting) in [
            (with("postgres://", Some(&none)), "journal-password-file: "),
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
                Config::load(&flags(&["--journal-password-file", &password]), &env),
                "journal-password-file: needs --journal",
            ),
        ] {
            let m = message(bad);
            assert!(m.starts_with(setting), "{m}");
        }
        // The file key works like the flag.
        let file = write(
            &dir,
            "c.toml",
            &format!("[journal]\nurl = \"postgres://\"\npassword_file = {password:?}\n"),
        );
        let c = Config::load(&flags(&["--config", &file]), &env).unwrap();
        assert!(c.journal.is_some());
    }

    #[test]
    fn forward_from_flag_or_file() {
        let journal = ["--journal", "sqlite:///var/j.db"];
        assert!(load(&journal).unwrap().forward.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "c.toml",
            "[journal]\nretention = \"12h\"\n[forward]\nto = \"https://crm.internal/twilio\"\n\
             concurrency = 2\ntimeout = 3\nmax_backoff = 0.5\nbreaker_cooldown = 7\n",
        );
        let from_file = [&journal[..], &["--config", &file]].concat();
        let f = load(&from_file).unwrap().forward.unwrap();
        assert_eq!(f.url, "https://crm.internal/twilio");
        assert_eq!(f.concurrency, 2);
        assert_eq!(f.timeout, Duration::from_secs(3));
        // The first retry's ceiling never exceeds the cap.
        assert_eq!(f.backoff.base, Duration::from_millis(500));
        assert_eq!(f.backoff.cap, Duration::from_millis(500));
        assert_eq!(f.breaker_cooldown, Duration::from_secs(7));
        assert_eq!(f.retention, Duration::from_secs(12 * 3600));
        let over = [
            "--forward-to",
            "http://127.0.0.1:9000/in",
            "--forward-concurrency",
            "9",
        ];
        let flags = [&from_file[..], &over, &["--journal-retention", "30d"]].concat();
        let f = load(&flags).unwrap().forward.unwrap();
        assert_eq!(
            (f.url.as_str(), f.concurrency),
            ("http://127.0.0.1:9000/in", 9)
        );
        assert_eq!(f.retention, Duration::from_secs(30 * 86_400));
        let defaults = [&journal[..], &over[..2]].concat();
        let f = load(&defaults).unwrap().forward.unwrap();
        assert_eq!(f.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(f.backoff.cap, Duration::from_secs(300));
        let with_journal = |more: &[&'static str]| [&journal[..], more].concat();
        let spill = std::env::temp_dir().display().to_string();
        refused(&[
            (
                &["--forward-to", "http://x/in"],
                "forward-to: needs --journal",
            ),
            (
                &with_journal(&["--forward-to", "ftp://x/in"]),
                "forward-to: ",
            ),
            (
                &with_journal(&["--forward-to", "http://x/in#f"]),
                "forward-to: ",
            ),
            (
                &with_journal(&["--forward-to", "http://x/in", "--forward-concurrency", "0"]),
                "forward-concurrency: ",
            ),
            (
                &with_journal(&["--journal-retention", "soon"]),
                "journal-retention: ",
            ),
            (
                &with_journal(&["--journal-retention", "5s"]),
                "journal-retention: must be at least",
            ),
            (
                &with_journal(&["--journal-spill-dir", "/proc/no-such-dir"]),
                "journal-spill-dir: /proc/no-such-dir is not a writable directory",
            ),
            (
                &["--journal-spill-dir", &spill],
                "journal-spill-dir: needs --journal",
            ),
        ]);
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.role, Role::Primary);
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.public_url.is_none());
        assert!(c.watch && !c.trust_forwarded_headers);
    }

    /// The defaults `--help` shows are the ones the owners use: settled, they are the owners' own.
    #[test]
    fn the_shown_defaults_are_the_owners() {
        let url = "http://127.0.0.1:9/app";
        let line = [
            "--journal",
            "sqlite:///j.db",
            "--forward-to",
            url,
            "--upstream",
            url,
        ];
        let c = load(&line).unwrap();
        assert_eq!(
            format!("{:?}", c.limits),
            format!("{:?}", Limits::default())
        );
        let forward = ForwardSettings::new(url);
        assert_eq!(format!("{:?}", c.forward.unwrap()), format!("{forward:?}"));
        let upstream = UpstreamSettings::new(url.into());
        assert_eq!(
            format!("{:?}", c.upstream.unwrap()),
            format!("{upstream:?}")
        );
        let journal = c.journal.unwrap();
        assert_eq!(journal.retention, forward.retention);
        assert_eq!(journal.timeout, Duration::from_secs(1));
    }

    /// Every flag that takes seconds or a count refuses a value out of range with an error that
    /// names that flag (so no check names another setting).
    #[test]
    fn every_range_check_names_its_own_flag() {
        let url = "http://127.0.0.1:9/app";
        let on = [
            "--journal",
            "sqlite:///j.db",
            "--forward-to",
            url,
            "--upstream",
            url,
        ];
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut checked = 0;
        for arg in command.get_arguments() {
            let bad = match arg.get_value_names().and_then(|names| names.first()) {
                Some(name) if name == "SECONDS" => "-1",
                Some(name) if name == "N" => "0",
                _ => continue,
            };
            let flag = format!("--{}={bad}", arg.get_long().unwrap());
            let m = message(load(&[&on[..], &[&flag]].concat()));
            let name = arg.get_long().unwrap();
            assert!(m.starts_with(&format!("{name}: ")), "{flag}: {m}");
            checked += 1;
        }
        assert!(checked > 20, "{checked}");
    }

    #[test]
    fn every_bad_setting_is_named() {
        let no_token = Config::load(&flags(&[]), &env_with(None));
        assert!(message(no_token).contains("TWILIO_AUTH_TOKEN"));
        refused(&[
            (&["--role", "backup"], "role:"),
            (&["--templates", "/nonexistent/dir"], "templates:"),
            (&["--listen", "localhost"], "listen:"),
            (
                &["--public-url", "https://x.example/voice#ct=100"],
                "public-url:",
            ),
            (&["--log-format", "xml"], "log-format:"),
            (&["--drain-timeout=-1"], "drain-timeout:"),
            (
                &["--auth-token-file", "/nonexistent/token"],
                "auth-token-file:",
            ),
            (&["--tls-cert", "c.pem"], "tls-key:"),
            (&["--tls-key", "k.pem"], "tls-cert:"),
            (
                &["--upstream", "http://a", "--role", "fallback"],
                "upstream:",
            ),
            (
                &["--upstream", "http://a", "--upstream-client-key", "k"],
                "upstream-client-cert:",
            ),
            (
                &["--upstream", "http://a", "--upstream-signature", "x"],
                "upstream-signature:",
            ),
            (
                &["--upstream", "http://a", "--upstream-budget", "14.5"],
                "upstream-budget:",
            ),
        ]);
    }

    #[test]
    fn file_env_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let token = write(&dir, "token", "filetoken\n");
        let cfg = write(
            &dir,
            "c.toml",
            &format!(
                "listen = \"0.0.0.0:9000\"\nrole = \"fallback\"\nauth_token_file = {token:?}\n\
                 public_url = \"https://fallback.example.net/\"\n\
                 [vars]\nbackup_number = \"+15550100\"\n\
                 [accounts.AC00000000000000000000000000000001]\nenv = \"SUB_TOKEN\"\n\
                 [shared_keys.key1]\nenv = \"SUB_TOKEN\"\n",
            ),
        );
        let c = Config::load(&flags(&["--config", &cfg]), &env_with(Some("envtoken"))).unwrap();
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
        let line = [
            "--config",
            &cfg,
            "--role",
            "primary",
            "--listen",
            "127.0.0.1:1",
        ];
        let c = Config::load(&flags(&line), &env_with(Some("envtoken"))).unwrap();
        assert_eq!(c.role, Role::Primary);
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
    }

    #[test]
    fn config_file_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(&dir, "c.toml", "rol = \"fallback\"\n");
        assert!(message(load(&["--config", &cfg])).contains("unknown field"));
        let cfg = write(&dir, "u.toml", "[upstream]\nupstream_budget = 2\n");
        assert!(message(load(&["--config", &cfg])).contains("unknown field `upstream_budget`"));
        // A secret itself is no key, anywhere: only a file or a variable that holds it.
        for secret in ["auth_token = \"x\"\n", "[journal]\npassword = \"x\"\n"] {
            let cfg = write(&dir, "s.toml", secret);
            assert!(message(load(&["--config", &cfg])).contains("unknown field"));
        }
        let sid = format!("AC{}", "0".repeat(32));
        let cfg = write(
            &dir,
            "t.toml",
            &format!("[accounts.{sid}]\ntoken = \"x\"\n"),
        );
        assert!(message(load(&["--config", &cfg])).contains("unknown field `token`"));
        let cfg = write(&dir, "d.toml", "[accounts.ACshort]\nenv = \"SUB_TOKEN\"\n");
        assert!(message(load(&["--config", &cfg])).starts_with("accounts:"));
        let cfg = write(&dir, "e.toml", "[vars]\n\"bad name\" = \"x\"\n");
        assert!(message(load(&["--config", &cfg])).starts_with("vars:"));
    }

    #[test]
    fn upstream_paths_are_a_comma_list_in_a_flag_and_a_list_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            &dir,
            "c.toml",
            "[upstream]\npaths = [\"/voice\", \"/sms*\"]\n",
        );
        let line = ["--upstream", "http://a", "--config", &cfg];
        let u = load(&line).unwrap().upstream.unwrap();
        assert_eq!(u.paths, ["/voice", "/sms*"]);
        let line = [&line[..], &["--upstream-local-paths", " /a, ,/b "]].concat();
        let u = load(&line).unwrap().upstream.unwrap();
        assert_eq!(u.local_paths, ["/a", "/b"]);
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
