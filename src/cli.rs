//! The command line: subcommands and flags, each flag with its `TWIML_FAILOVER_*` environment twin.
//!
//! `serve`'s flags are declared with the settings they set, in [`crate::config`]; the other
//! commands' flags are here.

use std::path::PathBuf;

use clap::{Arg, Args, Parser, Subcommand};

use crate::config::{ServeArgs, DEFAULT_CONFIG_FILE, DEFAULT_TEMPLATES};
use crate::twilio::Role;

/// One binary that answers Twilio webhooks as the primary handler or as its fallback.
#[derive(Debug, Parser)]
#[command(name = "twiml-failover", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve(ServeArgs),
    /// Lint every template of both roles; prints `file:line:col: message` per problem, exit 1 if any.
    Check(CheckArgs),
    /// Print the X-Twilio-Signature Twilio would send for a URL and parameters.
    Sign(SignArgs),
    /// Rehearse a failover as Twilio performs it: call the primary, then the fallback, and report.
    Drill(DrillArgs),
    /// Inspect the webhook journal.
    Journal(JournalArgs),
    /// Audit, plan and apply the webhook wiring of every number of a Twilio account.
    Numbers(NumbersArgs),
    /// Print what `serve` would answer to a webhook (TwiML on stdout, which template answered on
    /// stderr), without a server or a signature; exit 1 when serve would answer 404 or 503.
    Render(RenderArgs),
    /// Run the template tests (`<templates>/tests/*.toml`): single answers and call flows, offline;
    /// exit 1 with a diff when one fails.
    Test(TestArgs),
    /// Convert a TwiML Bin (Mustache) into a template of this project, printed on stdout.
    ImportBin(ImportBinArgs),
}

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// Flags of `render`.
#[derive(Debug, Args)]
#[command(mut_arg("role", |arg| shown_default(arg, Role::Primary.as_str())))]
pub struct RenderArgs {
    /// The webhook path, as Twilio would request it: `/voice`, `/menu?lang=en`.
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Which role answers: primary or fallback.
    #[arg(long, env = "TWIML_FAILOVER_ROLE", value_name = "ROLE")]
    pub role: Option<String>,
    /// A request parameter as NAME=VALUE (repeat the flag, or a name, for several).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A file holding a form-encoded request body (`From=%2B1555...&Digits=1`), sent before --param.
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// Flags of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// The settings `check`, `render` and `test` share with `serve`: the template folder (here only
/// from the flag or its variable) and the config file (for `[vars]` and `extra_params`); the
/// defaults their help shows are the ones the commands use.
#[derive(Debug, Args)]
#[command(
    mut_arg("templates", |arg| shown_default(arg, DEFAULT_TEMPLATES)),
    mut_arg("config", |arg| shown_default(arg, format!("./{DEFAULT_CONFIG_FILE} if present")))
)]
pub struct TemplateFlags {
    /// Template directory holding primary/ and fallback/ (and tests/, for `test`).
    #[arg(long, env = "TWIML_FAILOVER_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// TOML config file (for [vars] and extra_params).
    #[arg(long, env = "TWIML_FAILOVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `arg`'s help with the default written after it, from the value the command uses.
fn shown_default(arg: Arg, default: impl std::fmt::Display) -> Arg {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}

/// Flags of `import-bin`.
#[derive(Debug, Args)]
pub struct ImportBinArgs {
    /// The TwiML Bin's text, as copied from the Twilio Console.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Flags of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The full URL Twilio would request (scheme, host, path and query; no #fragment needed).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The auth token or shared key secret (default: $TWILIO_AUTH_TOKEN).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// HMAC_SHA1 (auth tokens) or HMAC_SHA256 (shared keys).
    #[arg(long, default_value = "HMAC_SHA1", value_name = "NAME")]
    pub algorithm: String,
    /// Sign a JSON body: adds ?bodySHA256=<hex sha256 of FILE> to the URL and prints that URL too.
    #[arg(long, value_name = "FILE", conflicts_with = "params")]
    pub json: Option<PathBuf>,
    /// Form parameters as NAME=VALUE (repeat a name for several values).
    #[arg(value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// Flags of `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The number's voice URL, connection overrides in its fragment (`https://host/voice#ct=1000`).
    #[arg(long, env = "TWIML_FAILOVER_DRILL_PRIMARY", value_name = "URL")]
    pub primary: Option<String>,
    /// The voice "Primary handler fails" URL.
    #[arg(long, env = "TWIML_FAILOVER_DRILL_FALLBACK", value_name = "URL")]
    pub fallback: Option<String>,
    /// The messaging URL [default: --primary with its last segment `voice` replaced by `sms`].
    #[arg(long, env = "TWIML_FAILOVER_DRILL_SMS_PRIMARY", value_name = "URL")]
    pub sms_primary: Option<String>,
    /// The messaging fallback URL [default: derived from --fallback like --sms-primary].
    #[arg(long, env = "TWIML_FAILOVER_DRILL_SMS_FALLBACK", value_name = "URL")]
    pub sms_fallback: Option<String>,
    /// The auth token that signs the requests (default: $TWILIO_AUTH_TOKEN).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: String,
    /// What to rehearse: voice, sms, gather (follow the <Gather> action), redirect.
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_SCENARIO",
        value_delimiter = ',',
        default_value = "voice,sms",
        value_name = "LIST"
    )]
    pub scenario: Vec<crate::drill::Scenario>,
    /// Use a local server that fails this way as the primary (its path and overrides are kept).
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_SIMULATE_PRIMARY_FAILURE",
        value_name = "FAULT"
    )]
    pub simulate_primary_failure: Option<crate::drill::Fault>,
    /// Report format: text or json.
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: DrillFormat,
    /// Lowest verdict that makes the drill exit 1: warn (over the 15 s budget, overrides adjusted)
    /// or fail (no valid TwiML) [default: fail].
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_FAIL_ON",
        default_value = "fail",
        value_name = "VERDICT"
    )]
    pub fail_on: crate::drill::report::FailOn,
    /// Progress lines on stderr while waiting: auto (when stderr is a terminal), always, never.
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_PROGRESS",
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub progress: DrillProgress,
    /// Digits sent to a <Gather> action.
    #[arg(long, env = "TWIML_FAILOVER_DRILL_DIGITS", default_value = "1")]
    pub digits: String,
    /// The caller's number (From).
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_FROM",
        default_value = "+15550100100"
    )]
    pub from: String,
    /// The number called (To).
    #[arg(long, env = "TWIML_FAILOVER_DRILL_TO", default_value = "+15550100199")]
    pub to: String,
    /// The SMS text (Body).
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_BODY",
        default_value = "Failover drill"
    )]
    pub body: String,
    /// Take the URLs from this number's wiring in Twilio (E.164), read with TWILIO_ACCOUNT_SID and
    /// TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_AUTH_TOKEN, instead of --primary and friends.
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_NUMBER",
        value_name = "E164",
        conflicts_with_all = ["primary", "fallback", "sms_primary", "sms_fallback"]
    )]
    pub number: Option<String>,
    /// The AccountSid sent (picks the token on receivers with subaccounts).
    #[arg(
        long,
        env = "TWIML_FAILOVER_DRILL_ACCOUNT_SID",
        default_value = "AC00000000000000000000000000000000"
    )]
    pub account_sid: String,
}

/// Output format of `drill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrillFormat {
    /// For people.
    Text,
    /// For machines (cron, CI).
    Json,
}

/// When `drill` prints progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrillProgress {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn check_render_and_test_show_the_defaults_they_use() {
        let cli = Cli::command();
        let config_file = format!("./{DEFAULT_CONFIG_FILE} if present");
        let shown = [
            ("templates", DEFAULT_TEMPLATES),
            ("config", config_file.as_str()),
        ];
        for name in ["check", "render", "test"] {
            let command = cli.find_subcommand(name).unwrap();
            let render_role = [("role", Role::Primary.as_str())];
            let extra = if name == "render" {
                &render_role[..]
            } else {
                &[]
            };
            for (id, default) in shown.iter().chain(extra) {
                let arg = command.get_arguments().find(|a| a.get_id() == *id);
                let help = arg.and_then(Arg::get_help).map(ToString::to_string);
                let help = help.unwrap_or_default();
                assert!(
                    help.ends_with(&format!("[default: {default}]")),
                    "{name} --{id}: {help}"
                );
                assert_eq!(
                    help.matches("[default:").count(),
                    1,
                    "{name} --{id}: {help}"
                );
            }
        }
    }
}
