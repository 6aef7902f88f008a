//! `twiml-failover test`: runs the template tests (being written; refuses until then).

use std::process::ExitCode;

use twiml_failover::cli::TestArgs;

/// Refuses: the runner is not in this build yet.
pub fn run(_args: TestArgs) -> ExitCode {
    super::fail("test: not available in this build yet")
}
