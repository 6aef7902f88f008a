//! `drill`: play Twilio against a number's primary and fallback URLs and report who answered (see
//! [`crate::drill`]); exit 1 when a scenario did not get the answer it should.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;

use super::{current_thread_runtime, print, Failure, Outcome};
use crate::drill::Options;
use crate::numbers::lookup;
use crate::numbers::rest::Credentials;
use crate::secrets::process_env;

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

/// Runs the drill; with `--number`, first reads the URLs Twilio has for that number.
pub fn run(args: DrillArgs) -> Outcome {
    let runtime = current_thread_runtime()?;
    let (mut primary, mut fallback) = (args.primary, args.fallback);
    let (mut sms_primary, mut sms_fallback) = (args.sms_primary, args.sms_fallback);
    if let Some(number) = &args.number {
        // The wiring Twilio actually has, read through the same code as `numbers`.
        let credentials = Credentials::from_env(process_env).map_err(Failure::new)?;
        let api_base = process_env("TWIML_FAILOVER_TWILIO_API_BASE");
        let urls = runtime
            .block_on(lookup::drill_urls(number, credentials, api_base))
            .map_err(Failure::new)?;
        for note in &urls.notes {
            eprintln!("{number} {note}");
        }
        (primary, fallback) = (urls.voice.url, urls.voice.fallback_url);
        (sms_primary, sms_fallback) = (urls.sms.url, urls.sms.fallback_url);
    }
    let opts = Options {
        primary,
        fallback,
        sms_primary,
        sms_fallback,
        token: args.token,
        scenarios: args.scenario,
        simulate: args.simulate_primary_failure,
        digits: args.digits,
        from: args.from,
        to: args.to,
        body: args.body,
        account_sid: args.account_sid,
        progress: match args.progress {
            DrillProgress::Always => true,
            DrillProgress::Never => false,
            DrillProgress::Auto => std::io::stderr().is_terminal(),
        },
    };
    let report = runtime
        .block_on(crate::drill::run(&opts))
        .map_err(Failure::new)?;
    print(&match args.format {
        DrillFormat::Text => report.to_text(),
        DrillFormat::Json => report.to_json() + "\n",
    });
    Ok(if report.passes(args.fail_on) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
