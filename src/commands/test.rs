//! `test`: runs the template tests in `<templates>/tests/*.toml` (format in `authoring::suite`)
//! against the templates as `serve` loads them; prints `ok`/`FAIL` per case and flow with what
//! differs, exit 1 when any failed. Not pure: reads the files and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::template_inputs::{TemplateFlags, TemplateInputs};
use super::{Failure, Outcome};
use crate::authoring::suite;
use crate::operator_file;
use crate::templates::Templates;
use crate::twilio::Role;

/// Flags of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// `--templates` and `--config`.
    #[command(flatten)]
    pub inputs: TemplateFlags,
}

/// Exit 0 when every case and flow passed, 1 when one failed or a test file is broken.
pub fn run(args: TestArgs) -> Outcome {
    let inputs = TemplateInputs::load(args.inputs.templates, args.inputs.config)?;
    let dir = inputs.root.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Failure::new(format!("tests: {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        // A CI step that tests nothing must not pass.
        return Err(Failure::new(format!(
            "tests: no *.toml in {} (see docs/templates-workflow.md)",
            dir.display()
        )));
    }
    // Each role's templates are loaded once, as serve loads them, and only when a test uses it.
    let mut loaded: Vec<(Role, Templates)> = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for path in &files {
        let shown = path.display();
        // A file that cannot be read (a FIFO, a device, too large) stops the run: it is not a
        // test that failed.
        let text = operator_file::read_text(path, operator_file::MAX_DOCUMENT_BYTES)
            .map_err(|e| Failure::new(format!("tests: {e}")))?;
        let file = match suite::parse(&text) {
            Ok(file) => file,
            Err(e) => {
                println!("FAIL {shown}: {e}");
                failed += 1;
                continue;
            }
        };
        let roles = match suite::roles(&file) {
            Ok(roles) => roles,
            Err(e) => {
                println!("FAIL {shown}: {e}");
                failed += 1;
                continue;
            }
        };
        for role in roles {
            if !loaded.iter().any(|(r, _)| *r == role) {
                loaded.push((role, inputs.templates(role)?));
            }
        }
        let templates = |role: Role| -> &Templates {
            let found = loaded.iter().find(|(r, _)| *r == role);
            &found.expect("every role of the file was loaded above").1
        };
        for result in suite::run(&file, &templates) {
            if result.problems.is_empty() {
                println!("ok   {shown}: {}", result.name);
                passed += 1;
            } else {
                println!("FAIL {shown}: {}", result.name);
                for problem in &result.problems {
                    println!("     {problem}");
                }
                failed += 1;
            }
        }
    }
    eprintln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
