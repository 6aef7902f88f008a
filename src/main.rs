//! The `twiml-failover` binary: parse the command line, run the one command it names, exit with
//! the status that command chose (2 when it could not run).

use std::process::ExitCode;

use clap::Parser;
use twiml_failover::cli::{Cli, Command};
use twiml_failover::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Sign(args) => commands::sign::run(args),
        Command::Drill(args) => commands::drill::run(args),
        Command::Journal(args) => commands::journal::run(args),
        Command::Numbers(args) => commands::numbers::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Render(args) => commands::render::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::ImportBin(args) => commands::import_bin::run(args),
    };
    outcome.unwrap_or_else(|failure| {
        eprintln!("twiml-failover: error: {failure}");
        ExitCode::from(2)
    })
}
