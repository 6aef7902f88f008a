//! The subcommands, one file each; each returns the process's exit code. Not pure: they read files
//! and print; the logic they call lives in the library.

pub mod import_bin;
pub mod render;
pub mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use twiml_failover::config;
use twiml_failover::templates::{check, Templates};
use twiml_failover::templates::{Role, TemplateSettings};

/// Prints a usage or set-up error and returns exit status 2.
pub fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("twiml-failover: error: {e}");
    ExitCode::from(2)
}

/// The template root and settings `render` and `test` share with `check`: `--templates` (default
/// `twiml-templates`) and `--config` (default `./twiml-failover.toml` when present).
pub struct TemplateInputs {
    /// Folder holding `primary/`, `fallback/` (and `tests/`).
    pub root: PathBuf,
    /// `[vars]` and `extra_params` of the config file.
    pub settings: TemplateSettings,
    /// The config file read, if any.
    pub config: Option<PathBuf>,
}

impl TemplateInputs {
    /// Reads the config file (saying so on stderr when it was found rather than given).
    pub fn load(templates: Option<PathBuf>, mut config: Option<PathBuf>) -> Result<Self, String> {
        if let Some(path) = config::discover_config_file(&mut config) {
            eprintln!("no --config given: reading {}", path.display());
        }
        let settings =
            config::load_template_settings(config.as_deref()).map_err(|e| e.to_string())?;
        let root = templates.unwrap_or_else(|| PathBuf::from("twiml-templates"));
        if !root.is_dir() {
            return Err(format!("templates: {} is not a directory", root.display()));
        }
        Ok(TemplateInputs {
            root,
            settings,
            config,
        })
    }

    /// Loads the sets `role` answers from, as `serve` does; on a problem, lists them and names the
    /// `check` command that shows them with their places.
    pub fn templates(&self, role: Role) -> Result<Templates, String> {
        Templates::load(&self.root, role, &self.settings).map_err(|diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            format!(
                "the {} templates do not load ({} problem(s)); see them with `{}`:\n{}",
                role.as_str(),
                diagnostics.len(),
                check::command(&self.root, self.config.as_deref()),
                lines.join("\n")
            )
        })
    }
}

/// `primary` or `fallback`, as `serve` spells them.
pub fn parse_role(raw: Option<&str>) -> Result<Role, String> {
    match raw.unwrap_or("primary") {
        "primary" => Ok(Role::Primary),
        "fallback" => Ok(Role::Fallback),
        other => Err(format!(
            "role: {other:?} is not a role (primary or fallback)"
        )),
    }
}
