//! The `numbers` command and `drill --number`: settings from flags and the environment, one read
//! of the account, then audit, plan or apply, printed for people or scripts. I/O (terminal,
//! environment, API); the decisions are in the pure modules.

use std::io::{BufRead, IsTerminal, Write};

use super::apply::{self, Outcome};
use super::audit::{self, effective};
use super::model::Account;
use super::plan::{self, Selection};
use super::report;
use super::rest::{Api, Credentials, Setup};
use super::wiring::{Channel, Wiring};
use crate::cli::{NumberSelection, NumbersArgs, NumbersCommand, NumbersFormat};

/// Exit status: everything fine / applied.
pub const OK: u8 = 0;
/// Exit status: a number fails the audit, or a change was not applied.
pub const NOT_OK: u8 = 1;
/// Exit status: nothing done (bad settings, credentials, an API read that failed).
pub const ERROR: u8 = 2;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn api(args: &NumbersArgs) -> Result<Api, String> {
    Api::new(Setup {
        credentials: Credentials::from_env(process_env)?,
        api_base: args.api_base.clone(),
        rate: args.rate,
    })
}

fn selection(s: &NumberSelection) -> Selection {
    Selection {
        numbers: s.numbers.clone(),
        patterns: s.patterns.clone(),
    }
}

async fn read(api: &Api, sel: &Selection) -> Result<Account, String> {
    let account = api.fetch(None).await.map_err(|e| e.to_string())?;
    let missing = sel.missing(&account);
    if !missing.is_empty() {
        return Err(format!(
            "no such number in account {}: {}",
            api.account,
            missing.join(", ")
        ));
    }
    Ok(account)
}

fn print(text: &str) {
    // A closed pipe (`| head`) must not turn a finished run into a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Runs `numbers …`; returns the exit status. Errors go to stderr.
pub async fn run(args: NumbersArgs) -> u8 {
    match run_inner(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twiml-failover numbers: error: {e}");
            ERROR
        }
    }
}

async fn run_inner(args: &NumbersArgs) -> Result<u8, String> {
    let path = args.wiring.as_deref().ok_or(
        "wiring: no file; pass --wiring FILE or set TWIML_FAILOVER_NUMBERS_WIRING \
         (deploy/twilio/wiring.toml is an example)",
    )?;
    let wiring = Wiring::load(path)?;
    let api = api(args)?;
    let json = args.format == NumbersFormat::Json;
    match &args.command {
        NumbersCommand::Audit(s) => {
            let sel = selection(s);
            let account = read(&api, &sel).await?;
            let audits = audit::audit(&account, &wiring, |n| sel.contains(n));
            if json {
                print(&report::audit_json(&audits));
            } else {
                let tty = std::io::stdout().is_terminal();
                let colour = tty && std::env::var_os("NO_COLOR").is_none();
                print(&report::audit_text(&audits, tty, colour));
            }
            Ok(if audits.iter().all(|a| a.ok()) {
                OK
            } else {
                NOT_OK
            })
        }
        NumbersCommand::Plan(s) => {
            let sel = selection(s);
            let account = read(&api, &sel).await?;
            let p = plan::plan(&account, &wiring, &sel);
            print(&if json {
                report::plan_json(&p)
            } else {
                report::plan_text(&p)
            });
            Ok(OK)
        }
        NumbersCommand::Apply(a) => {
            let sel = selection(&a.selection);
            let account = read(&api, &sel).await?;
            let p = plan::plan(&account, &wiring, &sel);
            if a.dry_run {
                print(&report::plan_text(&p));
                print(&apply::dry_run(&api, &p));
                return Ok(OK);
            }
            if p.changes.is_empty() {
                print(&if json {
                    "[]\n".to_string()
                } else {
                    report::plan_text(&p)
                });
                return Ok(OK);
            }
            if !a.yes {
                if !json {
                    print(&report::plan_text(&p));
                }
                if !confirm(&p)? {
                    eprintln!("nothing applied");
                    return Ok(NOT_OK);
                }
            }
            let outcomes = apply::apply(&api, &p, |o| {
                if !json {
                    print(&format!("{}\n", apply::outcome_line(o)));
                }
            })
            .await;
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            if json {
                print(&(serde_json::to_string_pretty(&outcomes).unwrap_or_default() + "\n"));
            } else {
                print(&summary(&outcomes, failed));
            }
            Ok(if failed == 0 { OK } else { NOT_OK })
        }
    }
}

fn summary(outcomes: &[Outcome], failed: usize) -> String {
    if failed == 0 {
        format!("Applied: {} resource(s) updated.\n", outcomes.len())
    } else {
        format!(
            "Applied {} of {} resource(s); {failed} failed (see FAILED above). Run apply again \
             after fixing the cause: it changes only what still differs.\n",
            outcomes.len() - failed,
            outcomes.len()
        )
    }
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(p: &plan::Plan) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("apply: stdin is not a terminal to confirm on; pass --yes".into());
    }
    eprint!(
        "Apply {} field change(s) to {} resource(s)? [y/N] ",
        p.field_count(),
        p.changes.len()
    );
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("apply: cannot read the answer: {e}"))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A number's effective URLs, as `drill --number` rehearses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillUrls {
    /// Voice primary URL (none when a SIP trunk takes the calls).
    pub primary: Option<String>,
    /// Voice fallback URL.
    pub fallback: Option<String>,
    /// Messaging primary URL.
    pub sms_primary: Option<String>,
    /// Messaging fallback URL.
    pub sms_fallback: Option<String>,
    /// Who handles what, for the operator (`voice: App AP…`).
    pub notes: Vec<String>,
}

/// Reads `number`'s wiring from Twilio (credentials from the environment; `api_base` for tests)
/// and returns the URLs Twilio would call.
pub async fn drill_urls(number: &str, api_base: Option<String>) -> Result<DrillUrls, String> {
    let api = Api::new(Setup {
        credentials: Credentials::from_env(process_env)?,
        api_base,
        rate: 10.0,
    })?;
    let account = api.fetch(Some(number)).await.map_err(|e| e.to_string())?;
    let n = account
        .numbers
        .iter()
        .find(|n| n.phone_number == number)
        .ok_or_else(|| format!("number: {number} is not in account {}", api.account))?;
    let mut out = DrillUrls::default();
    for channel in [Channel::Voice, Channel::Sms] {
        let (source, h) = effective(&account, n, channel);
        out.notes.push(format!(
            "{}: handled by {}",
            channel.as_str(),
            source.label()
        ));
        match channel {
            Channel::Voice => {
                out.primary = h.url;
                out.fallback = h.fallback_url;
            }
            Channel::Sms => {
                out.sms_primary = h.url;
                out.sms_fallback = h.fallback_url;
            }
        }
    }
    Ok(out)
}
