//! `test`: runs the template tests (being written; refuses until then).

use super::{Failure, Outcome};
use crate::cli::TestArgs;

/// Refuses: the runner is not in this build yet.
pub fn run(_args: TestArgs) -> Outcome {
    Err(Failure::new("test: not available in this build yet"))
}
