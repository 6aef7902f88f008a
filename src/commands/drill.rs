//! `drill`: play Twilio against a number's primary and fallback URLs and report who answered (see
//! [`crate::drill`]); exit 1 when a scenario did not get the answer it should.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::{current_thread_runtime, print, Failure, Outcome};
use crate::cli::{DrillArgs, DrillFormat, DrillProgress};
use crate::drill::Options;
use crate::numbers::lookup;
use crate::numbers::rest::Credentials;
use crate::secrets::process_env;

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
