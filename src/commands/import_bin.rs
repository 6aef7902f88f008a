//! `import-bin`: converts a TwiML Bin (being written; refuses until then).

use super::{Failure, Outcome};
use crate::cli::ImportBinArgs;

/// Refuses: the converter is not in this build yet.
pub fn run(_args: ImportBinArgs) -> Outcome {
    Err(Failure::new("import-bin: not available in this build yet"))
}
