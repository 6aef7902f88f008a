//! What `check`, `render` and `test` share: the template folder (`--templates`, default
//! `twiml-templates`), the config file (`--config`, default `./twiml-failover.toml` when present)
//! and the role. Not pure: reads the config file and says on stderr which one it read, or that it
//! found none.

use std::path::{Path, PathBuf};

use clap::{Arg, Args};

use super::Failure;
use crate::config::{self, StartupError, DEFAULT_CONFIG_FILE, DEFAULT_TEMPLATES};
use crate::templates::{check_command, TemplateSettings, Templates};
use crate::twilio::Role;

/// The settings `check`, `render` and `test` share with `serve`: the template folder (here only
/// from the flag or its variable) and the config file (for `[vars]` and `extra_params`); the
/// defaults their help shows are the ones the commands use.
#[derive(Debug, Args)]
#[command(
    mut_arg("templates", |arg| shown_default(arg, DEFAULT_TEMPLATES)),
    mut_arg("config", |arg| shown_default(arg, format!("./{DEFAULT_CONFIG_FILE} if present")))
)]
pub struct TemplateFlags {
    /// Template directory holding primary/ and fallback/ (and tests/, for `test`).
    #[arg(long, env = "TWIML_FAILOVER_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// TOML config file (for [vars] and extra_params).
    #[arg(long, env = "TWIML_FAILOVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `arg`'s help with the default written after it, from the value the command uses.
pub fn shown_default(arg: Arg, default: impl std::fmt::Display) -> Arg {
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}

/// Reads only the template-related part of a config file: `[vars]` and `extra_params`.
pub fn load_template_settings(path: Option<&Path>) -> Result<TemplateSettings, StartupError> {
    let file = config::read_file(path)?;
    config::template_settings(file.vars, file.extra_params)
}

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
    /// Reads the config file, saying on stderr when it was found rather than given, or that there
    /// is none (and where it looked, and how to give one).
    pub fn load(templates: Option<PathBuf>, mut config: Option<PathBuf>) -> Result<Self, Failure> {
        let given = config.is_some();
        match config::discover_config_file(&mut config) {
            Some(path) => eprintln!("no --config given: reading {}", path.display()),
            None if !given => eprintln!("{}", no_config_file()),
            None => {}
        }
        let settings = load_template_settings(config.as_deref())?;
        let root = config::template_dir(templates, "TWIML_FAILOVER_TEMPLATES")?;
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
                check_command(&self.root, self.config.as_deref()),
                lines.join("\n")
            ))
        })
    }
}

/// What a command says when it was given no config file and found none: where it looked, and how
/// to give one (templates that name `[vars]` fail without it).
pub fn no_config_file() -> String {
    format!(
        "no config file: none given, and no ./{} in {}; going on without [vars] and extra_params \
         (give one with --config FILE or TWIML_FAILOVER_CONFIG=FILE)",
        DEFAULT_CONFIG_FILE,
        config::working_directory()
    )
}

/// `primary` or `fallback`, as `serve` spells them [default: primary].
pub fn parse_role(raw: Option<&str>) -> Result<Role, Failure> {
    let name = raw.unwrap_or(Role::Primary.as_str());
    Role::from_name(name).ok_or_else(|| {
        Failure::new(format!(
            "role: {name:?} is not a role (primary or fallback)"
        ))
    })
}
