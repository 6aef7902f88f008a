//! Which of a number's two webhook URLs a server answers: Twilio's "A call comes in" (the primary
//! handler) or "Primary handler fails" (the fallback). Pure.

use serde::{Deserialize, Serialize};

/// Which template set the server answers from, and what its journal and logs say it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The number's primary URL: `primary/` templates, `fallback/` on run-time failure.
    Primary,
    /// The "Primary Handler Fails" URL: the degraded `fallback/` set only.
    Fallback,
}

impl Role {
    /// The role's name, also the template subdirectory.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Fallback => "fallback",
        }
    }

    /// The role named `name` ([`Role::as_str`]'s inverse).
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Primary, Role::Fallback]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}
