//! One function per subcommand, each readable alone: `serve`, `check`, `sign`, `drill`, `journal`,
//! `numbers`, and the template workflow's `render`, `test`, `import-bin`. Each returns how it ended: `Ok(status)` when it did its job (0, or 1 when what it
//! checked has problems), `Err(Failure)` when it could not (the binary prints it, exit status 2).

pub mod check;
pub mod drill;
pub mod import_bin;
pub mod journal;
pub mod journal_args;
pub mod numbers;
pub mod numbers_args;
pub mod render;
pub mod serve;
pub mod sign;
pub mod template_inputs;
pub mod test;

use std::fmt;
use std::process::ExitCode;

/// A command's result: the exit status it chose, or why it could not run.
pub type Outcome = Result<ExitCode, Failure>;

/// Why a command could not do its job: one line that names the setting or input at fault.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    /// A failure saying `message`.
    pub fn new(message: impl fmt::Display) -> Failure {
        Failure(message.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::config::StartupError> for Failure {
    fn from(e: crate::config::StartupError) -> Failure {
        Failure::new(e)
    }
}

/// A runtime on this thread, for the commands that make a few requests.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::new)
}

/// Writes a command's report to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}
