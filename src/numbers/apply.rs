//! Makes a plan's changes: one form-encoded update per resource, the planned fields only, in plan
//! order, going on past a resource that fails. `--dry-run` prints the requests instead, with the
//! credentials redacted. I/O.

use serde::Serialize;

use super::plan::{Change, Kind, Plan};
use super::rest::Api;

/// What happened to one resource.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What it is.
    pub kind: Kind,
    /// Its sid.
    pub sid: String,
    /// Number or name.
    pub label: String,
    /// Fields written.
    pub fields: usize,
    /// Why it was not changed; absent when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn form(c: &Change) -> Vec<(&str, &str)> {
    c.fields.iter().map(|f| (f.name, f.new.as_str())).collect()
}

/// The HTTP requests `apply` would send, credentials redacted.
pub fn dry_run(api: &Api, plan: &Plan) -> String {
    let mut out = String::from("DRY RUN: nothing is sent.\n");
    for c in &plan.changes {
        out.push_str(&format!(
            "\nPOST {}\nAuthorization: {}\nContent-Type: application/x-www-form-urlencoded\n\n{}\n",
            api.resource_url(c.kind, &c.sid),
            api.credentials().redacted(),
            serde_urlencoded::to_string(form(c)).unwrap_or_default()
        ));
    }
    out
}

/// Applies every change of `plan`, calling `progress` after each.
pub async fn apply(api: &Api, plan: &Plan, mut progress: impl FnMut(&Outcome)) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for c in &plan.changes {
        let result = api.update(c.kind, &c.sid, &form(c)).await;
        let outcome = Outcome {
            kind: c.kind,
            sid: c.sid.clone(),
            label: c.label.clone(),
            fields: c.fields.len(),
            error: result.err().map(|e| e.to_string()),
        };
        progress(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

/// `updated number +1555… (PN…): 8 field(s)` or `FAILED …: why`.
pub fn outcome_line(o: &Outcome) -> String {
    match &o.error {
        None => format!(
            "updated {} {} ({}): {} field(s)",
            o.kind.as_str(),
            o.label,
            o.sid,
            o.fields
        ),
        Some(e) => format!("FAILED {} {} ({}): {e}", o.kind.as_str(), o.label, o.sid),
    }
}
