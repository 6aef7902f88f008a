//! The `journal` command's flags and subcommands, and what it reads of the config file (not pure:
//! that read).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::config::{read_file, StartupError};
use crate::keyring::KeyRing;
use crate::secrets::EnvLookup;

/// Flags of `journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// The journal: sqlite:///path.db or postgres://... (default: `[journal] url` of --config).
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_JOURNAL",
        value_name = "URL"
    )]
    pub journal: Option<String>,
    /// TOML config file whose `[journal] url` is used when --journal is not given.
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// File holding a PostgreSQL journal's password (as `serve --journal-password-file`).
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_JOURNAL_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub journal_password_file: Option<PathBuf>,
    /// Output format: text or json.
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_JOURNAL_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: JournalFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: JournalCommand,
}

/// The `journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Counts: total, undelivered, delivered, oldest undelivered.
    Stats,
    /// Events, oldest first.
    List {
        /// Only events received at or after this time: RFC 3339 (2026-11-25T16:00:00Z) or an age (15m, 2h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most this many events.
        #[arg(long, default_value = "100", value_name = "N")]
        limit: usize,
    },
    /// One event with all its parameters.
    Show {
        /// The event id (from `list`).
        id: i64,
    },
    /// Send events again (delivered or not) to the forward target, signed like the forwarder does.
    Replay(ReplayArgs),
}

/// Output format of `journal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalFormat {
    /// For people.
    Text,
    /// For machines.
    Json,
}

/// Flags of `journal replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only events received at or after this time: RFC 3339 (2026-11-25T16:00:00Z) or an age (15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Where to send them [default: --forward-to / TWIML_FAILOVER_FORWARD_TO / `[forward] to`].
    #[arg(long, env = "TWIML_FAILOVER_FORWARD_TO", value_name = "URL")]
    pub to: Option<String>,
    /// Seconds one request may take.
    #[arg(
        long,
        env = "TWIML_FAILOVER_FORWARD_TIMEOUT",
        default_value = "10",
        value_name = "SECONDS"
    )]
    pub timeout: f64,
    /// Progress bar on stderr: auto (drawn when stderr is a terminal) or never.
    #[arg(
        long,
        env = "TWIML_FAILOVER_REPLAY_PROGRESS",
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub progress: ReplayProgress,
}

/// When `journal replay` draws its progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayProgress {
    /// When stderr is a terminal.
    Auto,
    /// Never.
    Never,
}

/// What `journal replay` needs from the config file and environment: the signing keys (auth
/// token from `auth_token_file` or `TWILIO_AUTH_TOKEN`, subaccounts from `[accounts]`) and the
/// configured forward target.
pub fn load_replay_settings(
    path: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<(KeyRing, Option<String>), StartupError> {
    let file = read_file(path)?;
    Ok((file.keyring(env)?, file.forward.to))
}

/// Reads only the `[journal] url` and `password_file` of a config file.
pub fn load_journal_url(path: &Path) -> Result<(Option<String>, Option<PathBuf>), StartupError> {
    let journal = read_file(Some(path))?.journal;
    Ok((journal.url, journal.password_file))
}
