//! What templates may use besides Twilio's parameters ([`TemplateSettings`]). Pure. Which set a
//! server answers from is its [`crate::twilio::Role`].

use std::collections::BTreeMap;

/// What templates may use besides Twilio's parameters.
#[derive(Debug, Clone, Default)]
pub struct TemplateSettings {
    /// `[vars]`: values available to every template (they win over request parameters).
    pub vars: BTreeMap<String, String>,
    /// Extra request parameter names templates may use (e.g. custom query parameters).
    pub extra_params: Vec<String>,
}

impl TemplateSettings {
    /// Checks that every `[vars]` and `extra_params` name is one a template can write.
    pub fn new(vars: BTreeMap<String, String>, extra_params: Vec<String>) -> Result<Self, String> {
        for name in vars.keys().chain(extra_params.iter()) {
            if !is_name(name) {
                return Err(format!(
                    "{name:?} is not a usable template name (letters, digits, _)"
                ));
            }
        }
        Ok(TemplateSettings { vars, extra_params })
    }
}

/// True for a name a template can write as a variable: ASCII letters, digits and `_`, not starting
/// with a digit.
pub fn is_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
