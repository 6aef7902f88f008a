//! `check`: lint both template sets the way `serve` would load them; exit 1 when any has a problem.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::cli::CheckArgs;
use crate::config;
use crate::templates::check::check_all;

/// Prints every problem (one per line) to stdout and a summary to stderr.
pub fn run(mut args: CheckArgs) -> Outcome {
    if let Some(path) = config::discover_config_file(&mut args.config) {
        eprintln!("no --config given: reading {}", path.display());
    }
    let settings = config::load_template_settings(args.config.as_deref())?;
    let root = args
        .templates
        .unwrap_or_else(|| PathBuf::from("twiml-templates"));
    if !root.is_dir() {
        return Err(Failure::new(format!(
            "templates: {} is not a directory",
            root.display()
        )));
    }
    let diagnostics = check_all(&root, &settings);
    for d in &diagnostics {
        println!("{d}");
    }
    if diagnostics.is_empty() {
        eprintln!("{}: both template sets are fine", root.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s)", diagnostics.len());
        Ok(ExitCode::from(1))
    }
}
