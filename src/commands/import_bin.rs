//! `import-bin FILE`: converts a TwiML Bin into a template of this project (see `templates::bin`),
//! printed on stdout; what cannot be translated is listed as `FILE:line:col: message`, exit 1. Not
//! pure: reads the file and prints.

use std::process::ExitCode;

use super::{print, Failure, Outcome};
use crate::cli::ImportBinArgs;
use crate::operator_file;
use crate::templates::bin;
use crate::templates::MAX_TEMPLATE_FILE_BYTES;

/// Exit 0 with the template on stdout, 1 when the Bin holds something untranslatable.
pub fn run(args: ImportBinArgs) -> Outcome {
    let shown = args.file.display();
    let text =
        operator_file::read_text(&args.file, MAX_TEMPLATE_FILE_BYTES).map_err(Failure::new)?;
    match bin::import(&text) {
        Ok(imported) => {
            print(&imported.template);
            // Out before the note on stderr, for anyone reading both in one stream.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            if !imported.custom_params.is_empty() {
                let names: Vec<String> = imported
                    .custom_params
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect();
                eprintln!(
                    "{shown}: reads parameters Twilio does not send itself; for `check`, add to the \
                     config: extra_params = [{}]",
                    names.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{shown}:{p}");
            }
            eprintln!("{shown}: {} problem(s); nothing converted", problems.len());
            Ok(ExitCode::from(1))
        }
    }
}
