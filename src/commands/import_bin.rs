//! `twiml-failover import-bin`.
use std::process::ExitCode;
use twiml_failover::cli::ImportBinArgs;
pub fn run(_args: ImportBinArgs) -> ExitCode {
    ExitCode::SUCCESS
}
