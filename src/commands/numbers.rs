//! `numbers audit|plan|apply`: the account's phone numbers and their webhook wiring (see
//! [`crate::numbers`]).

use std::process::ExitCode;

use super::{current_thread_runtime, Outcome};
use crate::cli::NumbersArgs;

/// Runs the subcommand; its exit status comes from [`crate::numbers::command::run`].
pub fn run(args: NumbersArgs) -> Outcome {
    let runtime = current_thread_runtime()?;
    Ok(ExitCode::from(
        runtime.block_on(crate::numbers::command::run(args)),
    ))
}
