//! The `numbers` command's flags and subcommands. Pure.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Flags of `numbers`. Credentials come from the environment only: TWILIO_ACCOUNT_SID and
/// TWILIO_API_KEY + TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN.
#[derive(Debug, Args)]
pub struct NumbersArgs {
    /// The intended wiring (TOML: primary_base, fallback_base, overrides, voice_path, sms_path,
    /// status_callback, min_fallback_seconds).
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_NUMBERS_WIRING",
        value_name = "FILE"
    )]
    pub wiring: Option<PathBuf>,
    /// Send every API request to this loopback base instead of Twilio (tests).
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_TWILIO_API_BASE",
        value_name = "URL"
    )]
    pub api_base: Option<String>,
    /// API requests per second at most.
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_NUMBERS_RATE",
        default_value = "10",
        value_name = "N"
    )]
    pub rate: f64,
    /// Output format: text or json.
    #[arg(
        long,
        global = true,
        env = "TWIML_FAILOVER_NUMBERS_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: NumbersFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: NumbersCommand,
}

/// Output format of `numbers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NumbersFormat {
    /// For people: a table on a terminal, one line per number otherwise.
    Text,
    /// For scripts.
    Json,
}

/// The `numbers` subcommands.
#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Judge every selected number's effective wiring; exit 1 when any fails.
    Audit(NumberSelection),
    /// Show what apply would change, per resource, field by field.
    Plan(NumberSelection),
    /// Make the planned changes.
    Apply(ApplyNumbersArgs),
}

/// Which numbers: all unless numbers or patterns are given.
#[derive(Debug, Clone, Args)]
pub struct NumberSelection {
    /// Numbers (E.164 or PN… sid) to act on [default: all].
    #[arg(value_name = "NUMBER")]
    pub numbers: Vec<String>,
    /// Also select numbers whose phone number or friendly name matches (`*`, `?`); repeatable.
    #[arg(long = "match", value_name = "PATTERN")]
    pub patterns: Vec<String>,
}

/// Flags of `numbers apply`.
#[derive(Debug, Args)]
pub struct ApplyNumbersArgs {
    /// Which numbers.
    #[command(flatten)]
    pub selection: NumberSelection,
    /// Apply without asking (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Print the HTTP requests (credentials redacted) and send none.
    #[arg(long)]
    pub dry_run: bool,
}
