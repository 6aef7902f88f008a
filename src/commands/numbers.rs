//! `numbers audit|plan|apply`: settings from flags and the environment, one read of the account,
//! then audit, plan or apply (see [`crate::numbers`]), printed for people or scripts. Exit 1 when a
//! number fails the audit or a change was not applied. I/O (terminal, environment, API); the
//! decisions are in the pure `numbers` modules.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use super::numbers_args::{NumberSelection, NumbersArgs, NumbersCommand, NumbersFormat};
use super::{current_thread_runtime, print, Failure, Outcome};
use crate::numbers::apply::{self, Outcome as Applied};
use crate::numbers::audit;
use crate::numbers::model::Account;
use crate::numbers::plan::{self, Plan, Selection};
use crate::numbers::report;
use crate::numbers::rest::{Api, Credentials, Setup};
use crate::numbers::wiring::Wiring;
use crate::secrets::process_env;

/// Runs the subcommand.
// Long on purpose: the subcommand's steps (read, fetch, plan, apply) and their exit codes in one place.
pub fn run(args: NumbersArgs) -> Outcome {
    let path = args.wiring.as_deref().ok_or_else(|| {
        Failure::new(
            "wiring: no file; pass --wiring FILE or set TWIML_FAILOVER_NUMBERS_WIRING \
             (deploy/twilio/wiring.toml is an example)",
        )
    })?;
    let wiring = Wiring::load(path).map_err(Failure::new)?;
    let api = Api::new(Setup {
        credentials: Credentials::from_env(process_env).map_err(Failure::new)?,
        api_base: args.api_base.clone(),
        rate: args.rate,
    })
    .map_err(Failure::new)?;
    let json = args.format == NumbersFormat::Json;
    let runtime = current_thread_runtime()?;
    let all_well = match &args.command {
        NumbersCommand::Audit(s) => {
            let sel = selection(s);
            let account = runtime.block_on(read(&api, &sel))?;
            let audits = audit::audit(&account, &wiring, |n| sel.contains(n));
            if json {
                print(&report::audit_json(&audits));
            } else {
                let tty = std::io::stdout().is_terminal();
                let colour = tty && std::env::var_os("NO_COLOR").is_none();
                print(&report::audit_text(&audits, tty, colour));
            }
            audits.iter().all(|a| a.ok())
        }
        NumbersCommand::Plan(s) => {
            let sel = selection(s);
            let account = runtime.block_on(read(&api, &sel))?;
            let p = plan::plan(&account, &wiring, &sel);
            print(&if json {
                report::plan_json(&p)
            } else {
                report::plan_text(&p)
            });
            true
        }
        NumbersCommand::Apply(a) => {
            let sel = selection(&a.selection);
            let account = runtime.block_on(read(&api, &sel))?;
            let p = plan::plan(&account, &wiring, &sel);
            if a.dry_run {
                print(&report::plan_text(&p));
                print(&apply::dry_run(&api, &p));
                return Ok(ExitCode::SUCCESS);
            }
            if p.changes.is_empty() {
                print(&if json {
                    "[]\n".to_string()
                } else {
                    report::plan_text(&p)
                });
                return Ok(ExitCode::SUCCESS);
            }
            if !a.yes {
                if !json {
                    print(&report::plan_text(&p));
                }
                if !confirm(&p)? {
                    eprintln!("nothing applied");
                    return Ok(ExitCode::from(1));
                }
            }
            let outcomes = runtime.block_on(apply::apply(&api, &p, |o| {
                if !json {
                    print(&format!("{}\n", apply::outcome_line(o)));
                }
            }));
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            if json {
                print(&(serde_json::to_string_pretty(&outcomes).unwrap_or_default() + "\n"));
            } else {
                print(&summary(&outcomes, failed));
            }
            failed == 0
        }
    };
    Ok(if all_well {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn selection(s: &NumberSelection) -> Selection {
    Selection {
        numbers: s.numbers.clone(),
        patterns: s.patterns.clone(),
    }
}

/// The whole account, once; every number the selection names must be in it.
async fn read(api: &Api, sel: &Selection) -> Result<Account, Failure> {
    let account = api.fetch(None).await.map_err(Failure::new)?;
    let missing = sel.missing(&account);
    if !missing.is_empty() {
        return Err(Failure::new(format!(
            "no such number in account {}: {}",
            api.account,
            missing.join(", ")
        )));
    }
    Ok(account)
}

fn summary(outcomes: &[Applied], failed: usize) -> String {
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
fn confirm(p: &Plan) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            "apply: stdin is not a terminal to confirm on; pass --yes",
        ));
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
        .map_err(|e| Failure::new(format!("apply: cannot read the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
