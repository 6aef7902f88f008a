//! `twiml-failover import-bin`: converts a TwiML Bin (being written; refuses until then).

use std::process::ExitCode;

use twiml_failover::cli::ImportBinArgs;

/// Refuses: the converter is not in this build yet.
pub fn run(_args: ImportBinArgs) -> ExitCode {
    super::fail("import-bin: not available in this build yet")
}
