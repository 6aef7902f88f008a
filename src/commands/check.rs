//! `check`: lint both template sets the way `serve` would load them; exit 1 when any has a problem,
//! 0 when there are only warnings (which are printed too).

use std::process::ExitCode;

use clap::Args;

use super::template_inputs::{TemplateFlags, TemplateInputs};
use super::Outcome;
use crate::authoring::check::{check_all, warnings_all};

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// Prints every problem (one per line, a problem found in several places once) to stdout and a
/// summary to stderr.
pub fn run(args: CheckArgs) -> Outcome {
    let inputs = TemplateInputs::load(args.inputs.templates, args.inputs.config)?;
    let root = &inputs.root;
    let diagnostics = check_all(root, &inputs.settings);
    let warnings = warnings_all(root, &inputs.settings);
    for d in diagnostics.iter().chain(&warnings) {
        println!("{d}");
    }
    let warned = match warnings.len() {
        0 => String::new(),
        n => format!(" ({n} warning(s) above)"),
    };
    if diagnostics.is_empty() {
        eprintln!("{}: both template sets are fine{warned}", root.display());
        Ok(ExitCode::SUCCESS)
    } else {
        let read = match inputs.config {
            Some(_) => "",
            None => "; no config file was read (see the first line)",
        };
        eprintln!("{} problem(s){read}{warned}", diagnostics.len());
        Ok(ExitCode::from(1))
    }
}
