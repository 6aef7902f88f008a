//! Where `serve`'s secrets come from: a file (read once, bounded) or an environment variable,
//! never the config file, which only names them ([`SecretRef`]); and the [`KeyRing`] built from
//! them. Not pure: reads files and the environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::keyring::{KeyRing, Secret};
use crate::operator_file;
use crate::setting::{unusable, Unusable};

/// Reads environment variables; a trait object so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The real process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where a secret lives: a file or an environment variable, never the config file itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    file: Option<PathBuf>,
    env: Option<String>,
    secondary_file: Option<PathBuf>,
    secondary_env: Option<String>,
}

/// Where the signing secrets are named: the auth token's (and the rotating one's) file, else
/// `TWILIO_AUTH_TOKEN` (`TWILIO_SECONDARY_AUTH_TOKEN`); subaccounts and shared keys by table.
pub struct KeySources<'a> {
    /// `--auth-token-file`.
    pub auth_token_file: Option<&'a Path>,
    /// `--secondary-auth-token-file`.
    pub secondary_auth_token_file: Option<&'a Path>,
    /// `[accounts.AC…]`.
    pub accounts: &'a BTreeMap<String, SecretRef>,
    /// `[shared_keys.ID]`.
    pub shared_keys: &'a BTreeMap<String, SecretRef>,
}

impl KeySources<'_> {
    /// Reads every secret named; the auth token is required.
    pub fn keyring(&self, env: EnvLookup<'_>) -> Result<KeyRing, Unusable> {
        let token = |setting, file: Option<&Path>, variable| match file {
            Some(path) => read_file(setting, path).map(Some),
            None => Ok(env_secret(env, variable)),
        };
        let primary = token("auth-token-file", self.auth_token_file, "TWILIO_AUTH_TOKEN")?;
        let Some(primary) = primary else {
            return Err(unusable(
                "TWILIO_AUTH_TOKEN",
                "no auth token: set TWILIO_AUTH_TOKEN or --auth-token-file (auth_token_file in the config)",
            ));
        };
        let secondary = token(
            "secondary-auth-token-file",
            self.secondary_auth_token_file,
            "TWILIO_SECONDARY_AUTH_TOKEN",
        )?;
        let mut accounts = HashMap::new();
        for (sid, reference) in self.accounts {
            let is_sid = sid.len() == 34 && sid.chars().all(|c| c.is_ascii_alphanumeric());
            if !(sid.starts_with("AC") && is_sid) {
                let message = format!("{sid:?} is not an AccountSid (AC + 32 characters)");
                return Err(unusable("accounts", message));
            }
            let first = reference.resolve("accounts", sid, env)?;
            let second = resolve(
                "accounts",
                reference.secondary_file.as_deref(),
                reference.secondary_env.as_deref(),
                env,
            )?;
            accounts.insert(sid.clone(), std::iter::once(first).chain(second).collect());
        }
        let mut shared_keys = HashMap::new();
        for (id, reference) in self.shared_keys {
            if reference.secondary_file.is_some() || reference.secondary_env.is_some() {
                let message =
                    format!("{id}: a shared key has one secret; add a second key id to rotate");
                return Err(unusable("shared_keys", message));
            }
            shared_keys.insert(id.clone(), reference.resolve("shared_keys", id, env)?);
        }
        Ok(KeyRing {
            primary: Some(primary),
            secondary,
            accounts,
            shared_keys,
        })
    }
}

impl SecretRef {
    /// The secret this names (`what` says whose, in the error when it names none).
    fn resolve(
        &self,
        setting: &'static str,
        what: &str,
        env: EnvLookup<'_>,
    ) -> Result<Secret, Unusable> {
        resolve(setting, self.file.as_deref(), self.env.as_deref(), env)?
            .ok_or_else(|| unusable(setting, format!("{what}: set file or env")))
    }
}

/// A secret file's content, which must not be empty; `setting` names it in the error.
pub fn read_file(setting: &'static str, path: &Path) -> Result<Secret, Unusable> {
    let text = operator_file::read_text(path, operator_file::MAX_SECRET_BYTES)
        .map_err(|e| unusable(setting, format!("cannot read {e}")))?;
    let secret = Secret::new(&text);
    if secret.is_empty() {
        return Err(unusable(setting, format!("{} is empty", path.display())));
    }
    Ok(secret)
}

fn env_secret(env: EnvLookup<'_>, name: &str) -> Option<Secret> {
    env(name).map(|v| Secret::new(&v)).filter(|s| !s.is_empty())
}

fn resolve(
    setting: &'static str,
    file: Option<&Path>,
    env_name: Option<&str>,
    env: EnvLookup<'_>,
) -> Result<Option<Secret>, Unusable> {
    match (file, env_name) {
        (Some(_), Some(_)) => Err(unusable(setting, "give file or env, not both")),
        (Some(path), None) => read_file(setting, path).map(Some),
        (None, Some(name)) => env_secret(env, name)
            .map(Some)
            .ok_or_else(|| unusable(setting, format!("environment variable {name} is not set"))),
        (None, None) => Ok(None),
    }
}
