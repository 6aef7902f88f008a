//! `import-bin FILE`: converts a TwiML Bin into a template of this project (see `authoring::bin`),
//! printed on stdout; what cannot be translated is listed as `FILE:line:col: message`, exit 1. Not
//! pure: reads the file and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{print, Failure, Outcome};
use crate::authoring::bin;
use crate::operator_file;

/// Flags of `import-bin`.
#[derive(Debug, Args)]
pub struct ImportBinArgs {
    /// The TwiML Bin's text, as copied from the Twilio Console.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// The largest Bin read. Twilio answers at most 64 kB of TwiML, so no real Bin comes near it; it is
/// larger than a template file's cap so that a hostile Bin (100,000 nested sections) meets the
/// nesting check, whose message says where, rather than a bare size refusal.
const MAX_BIN_BYTES: u64 = 2 * 1024 * 1024;

/// Exit 0 with the template on stdout, 1 when the Bin holds something untranslatable.
pub fn run(args: ImportBinArgs) -> Outcome {
    let shown = args.file.display();
    let text = operator_file::read_text(&args.file, MAX_BIN_BYTES).map_err(Failure::new)?;
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
                // A top-level key must come before the file's first table: appended at the end it
                // would land in `[vars]` (or whatever table is last) and mean something else.
                eprintln!(
                    "{shown}: reads parameters Twilio does not send itself ({}); `check` accepts them \
                     once the config file lists them in extra_params. Put this line in the config \
                     file above its first [table] (above [vars]), or, if it has an extra_params \
                     line already, add the names to that list:\nextra_params = [{}]",
                    imported.custom_params.join(", "),
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
