//! What `render` and `test` share with `check`: the template folder (`--templates`, default
//! `twiml-templates`), the config file (`--config`, default `./twiml-failover.toml` when present)
//! and the role. Not pure: reads the config file and says on stderr which one it read.

use std::path::PathBuf;

use super::Failure;
use crate::config;
use crate::templates::{check, Role, TemplateSettings, Templates};

/// The template root and the config's template settings.
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
    pub fn load(templates: Option<PathBuf>, mut config: Option<PathBuf>) -> Result<Self, Failure> {
        if let Some(path) = config::discover_config_file(&mut config) {
            eprintln!("no --config given: reading {}", path.display());
        }
        let settings = config::load_template_settings(config.as_deref())?;
        let root = templates.unwrap_or_else(|| PathBuf::from("twiml-templates"));
        if !root.is_dir() {
            return Err(Failure::new(format!(
                "templates: {} is not a directory",
                root.display()
            )));
        }
        Ok(TemplateInputs {
            root,
            settings,
            config,
        })
    }

    /// Loads the sets `role` answers from, as `serve` does; on a problem, lists them and names the
    /// `check` command that shows them.
    pub fn templates(&self, role: Role) -> Result<Templates, Failure> {
        Templates::load(&self.root, role, &self.settings).map_err(|diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Failure::new(format!(
                "the {} templates do not load ({} problem(s)); see them with `{}`:\n{}",
                role.as_str(),
                diagnostics.len(),
                check::command(&self.root, self.config.as_deref()),
                lines.join("\n")
            ))
        })
    }
}

/// `primary` or `fallback`, as `serve` spells them [default: primary].
pub fn parse_role(raw: Option<&str>) -> Result<Role, Failure> {
    match raw.unwrap_or("primary") {
        "primary" => Ok(Role::Primary),
        "fallback" => Ok(Role::Fallback),
        other => Err(Failure::new(format!(
            "role: {other:?} is not a role (primary or fallback)"
        ))),
    }
}
