//! The command line: the [`Cli`] and one [`Command`] per subcommand. Pure.
//!
//! Each command's flags live with the command that reads them: `serve`'s with the settings they
//! set, in [`crate::config`] and the modules that own them; the others' in [`crate::commands`]
//! (`check`, `render`, `test` and their shared `--templates`/`--config`; `sign`; `drill`;
//! `import-bin`; `journal_args` and `numbers_args` for the commands with subcommands). Every flag
//! has its `TWIML_FAILOVER_*` environment twin where the command reads one.

use clap::{Parser, Subcommand};

use crate::commands::check::CheckArgs;
use crate::commands::drill::DrillArgs;
use crate::commands::import_bin::ImportBinArgs;
use crate::commands::journal_args::JournalArgs;
use crate::commands::numbers_args::NumbersArgs;
use crate::commands::render::RenderArgs;
use crate::commands::sign::SignArgs;
use crate::commands::test::TestArgs;
use crate::config::ServeArgs;

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
    /// Watch every selected number's wiring and failover path continuously: REST reads, probes as
    /// Twilio would make them, certificates; metrics, a JSON status and alerts (docs/monitor.md).
    Monitor(crate::monitor::MonitorArgs),
    /// Print what `serve` would answer to a webhook (TwiML on stdout, which template answered on
    /// stderr), without a server or a signature; exit 1 when serve would answer 404 or 503.
    Render(RenderArgs),
    /// Run the template tests (`<templates>/tests/*.toml`): single answers and call flows, offline;
    /// exit 1 with a diff when one fails.
    Test(TestArgs),
    /// Convert a TwiML Bin (Mustache) into a template of this project, printed on stdout.
    ImportBin(ImportBinArgs),
}

#[cfg(test)]
mod tests {
    use clap::{Arg, CommandFactory};

    use super::*;
    use crate::config::{DEFAULT_CONFIG_FILE, DEFAULT_TEMPLATES};
    use crate::twilio::Role;

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
