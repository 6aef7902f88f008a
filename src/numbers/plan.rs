//! What `apply` would change: per resource (number, TwiML App, Messaging Service), field by
//! field, old -> new, for the selected numbers only. Pure.
//!
//! Each selected number's channels are written where Twilio reads them (see [`super::audit`]): on
//! the number, or on the App or Service that handles them. An App or Service that also handles a
//! number outside the selection is left alone and said so, because changing it would change that
//! number too. Numbers on a SIP trunk get no voice change.

use std::collections::BTreeMap;

use serde::Serialize;
use wildmatch::WildMatch;

use super::audit::{differences, effective, Source};
use super::model::{set, Account, Number};
use super::wiring::{Channel, Wiring};

/// Which numbers a command acts on: all when both lists are empty.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// E.164 numbers or `PN…` sids.
    pub numbers: Vec<String>,
    /// Patterns (`*`, `?`) matched against the phone number and the friendly name.
    pub patterns: Vec<String>,
}

impl Selection {
    /// True when `n` is selected.
    pub fn contains(&self, n: &Number) -> bool {
        if self.numbers.is_empty() && self.patterns.is_empty() {
            return true;
        }
        self.numbers
            .iter()
            .any(|s| *s == n.phone_number || *s == n.sid)
            || self.patterns.iter().any(|p| {
                let m = WildMatch::new(p);
                m.matches(&n.phone_number) || set(&n.friendly_name).is_some_and(|f| m.matches(f))
            })
    }

    /// Listed numbers the account does not have.
    pub fn missing(&self, account: &Account) -> Vec<String> {
        self.numbers
            .iter()
            .filter(|s| {
                !account
                    .numbers
                    .iter()
                    .any(|n| n.phone_number == **s || n.sid == **s)
            })
            .cloned()
            .collect()
    }
}

/// The kinds of resource a plan changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `IncomingPhoneNumbers/{Sid}.json`.
    Number,
    /// `Applications/{Sid}.json`.
    Application,
    /// `messaging/v1/Services/{Sid}`.
    Service,
}

impl Kind {
    /// `number`, `app`, `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Application => "app",
            Kind::Service => "service",
        }
    }
}

/// One field: its API form name, current value and the value to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// The form parameter of the update (`VoiceFallbackUrl`).
    pub name: &'static str,
    /// What the resource has (`None`: unset).
    pub old: Option<String>,
    /// What it gets.
    pub new: String,
}

/// The changes to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What it is.
    pub kind: Kind,
    /// `PN…`, `AP…`, `MG…`.
    pub sid: String,
    /// For people: the phone number, or the friendly name.
    pub label: String,
    /// The selected numbers it serves.
    pub serves: Vec<String>,
    /// Fields that differ, in update order.
    pub fields: Vec<Field>,
}

/// A resource the plan would have changed but leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// What it is.
    pub kind: Kind,
    /// Its sid.
    pub sid: String,
    /// Why.
    pub reason: String,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Resources to update, numbers first, then Apps, then Services.
    pub changes: Vec<Change>,
    /// Resources left alone.
    pub skipped: Vec<Skipped>,
    /// Selected numbers whose voice goes to a SIP trunk (nothing to write for voice).
    pub trunked: Vec<String>,
}

impl Plan {
    /// Fields to write, over all resources.
    pub fn field_count(&self) -> usize {
        self.changes.iter().map(|c| c.fields.len()).sum()
    }
}

/// Plans the changes that make every selected number's effective wiring the intended one.
// Long on purpose: one pass per number over the fields Twilio's API names, in its order.
pub fn plan(account: &Account, w: &Wiring, selection: &Selection) -> Plan {
    let mut out = Plan::default();
    // Built up per resource; empty ones are dropped at the end.
    let mut by_resource: BTreeMap<(Kind, String), Change> = BTreeMap::new();
    let mut numbers_first: Vec<(Kind, String)> = Vec::new();
    for n in account.numbers.iter().filter(|n| selection.contains(n)) {
        for channel in [Channel::Voice, Channel::Sms] {
            let (source, handling) = effective(account, n, channel);
            let (kind, sid, label) = match &source {
                Source::Trunk(_) => {
                    out.trunked.push(n.phone_number.clone());
                    continue;
                }
                Source::Number => (Kind::Number, n.sid.clone(), n.phone_number.clone()),
                Source::Application(sid) => match account.applications.get(sid) {
                    Some(a) => (
                        Kind::Application,
                        sid.clone(),
                        set(&a.friendly_name).unwrap_or(sid).to_string(),
                    ),
                    None => {
                        skip(
                            &mut out,
                            Kind::Application,
                            sid,
                            "not found in the account".into(),
                        );
                        continue;
                    }
                },
                Source::Service(sid) => match account.services.get(sid) {
                    Some(s) => (
                        Kind::Service,
                        sid.clone(),
                        set(&s.friendly_name).unwrap_or(sid).to_string(),
                    ),
                    None => {
                        skip(
                            &mut out,
                            Kind::Service,
                            sid,
                            "not found in the account".into(),
                        );
                        continue;
                    }
                },
            };
            if kind != Kind::Number {
                let outside: Vec<&str> = account
                    .numbers
                    .iter()
                    .filter(|o| !selection.contains(o))
                    .filter(|o| effective(account, o, channel).0 == source)
                    .map(|o| o.phone_number.as_str())
                    .collect();
                if !outside.is_empty() {
                    skip(
                        &mut out,
                        kind,
                        &sid,
                        format!(
                            "also handles {} of {} number(s) outside the selection ({}); select them too",
                            channel.as_str(),
                            outside.len(),
                            outside.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    continue;
                }
            }
            let key = (kind, sid);
            let entry = by_resource.entry(key.clone()).or_insert_with(|| {
                numbers_first.push(key.clone());
                Change {
                    kind,
                    sid: key.1.clone(),
                    label,
                    serves: Vec::new(),
                    fields: Vec::new(),
                }
            });
            if !entry.serves.contains(&n.phone_number) {
                entry.serves.push(n.phone_number.clone());
            }
            // The audit's own comparison: `audit` is `ok` exactly when nothing is written here.
            for d in differences(channel, &handling, w) {
                let name = d.setting.api_field(&source, channel);
                if !entry.fields.iter().any(|e| e.name == name) {
                    entry.fields.push(Field {
                        name,
                        old: d.old,
                        new: d.new,
                    });
                }
            }
        }
    }
    // Numbers in the account's order, then Apps, then Services (each in first-use order).
    numbers_first.sort_by_key(|(kind, _)| *kind);
    for key in numbers_first {
        if let Some(change) = by_resource.remove(&key).filter(|c| !c.fields.is_empty()) {
            out.changes.push(change);
        }
    }
    out
}

fn skip(out: &mut Plan, kind: Kind, sid: &str, reason: String) {
    if !out.skipped.iter().any(|s| s.kind == kind && s.sid == sid) {
        out.skipped.push(Skipped {
            kind,
            sid: sid.to_string(),
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numbers::model::Service;

    fn number(sid: &str, phone: &str) -> Number {
        Number {
            sid: sid.into(),
            phone_number: phone.into(),
            friendly_name: Some(format!("store {phone}")),
            voice_method: Some("POST".into()),
            sms_method: Some("post".into()),
            ..Number::default()
        }
    }

    #[test]
    fn a_bare_number_gets_every_field_and_then_nothing() {
        let mut account = Account {
            numbers: vec![number("PN1", "+15550000001")],
            ..Account::default()
        };
        let w = Wiring::example();
        let p = plan(&account, &w, &Selection::default());
        assert_eq!(p.changes.len(), 1);
        let names: Vec<_> = p.changes[0].fields.iter().map(|f| f.name).collect();
        // The methods already POST (case aside) are not rewritten.
        assert_eq!(
            names,
            [
                "VoiceUrl",
                "VoiceFallbackUrl",
                "VoiceFallbackMethod",
                "StatusCallback",
                "StatusCallbackMethod",
                "SmsUrl",
                "SmsFallbackUrl",
                "SmsFallbackMethod"
            ]
        );
        // Written as planned, the plan is empty.
        let n = &mut account.numbers[0];
        for f in &p.changes[0].fields {
            let v = Some(f.new.clone());
            match f.name {
                "VoiceUrl" => n.voice_url = v,
                "VoiceFallbackUrl" => n.voice_fallback_url = v,
                "VoiceFallbackMethod" => n.voice_fallback_method = v,
                "StatusCallback" => n.status_callback = v,
                "StatusCallbackMethod" => n.status_callback_method = v,
                "SmsUrl" => n.sms_url = v,
                "SmsFallbackUrl" => n.sms_fallback_url = v,
                "SmsFallbackMethod" => n.sms_fallback_method = v,
                _ => unreachable!(),
            }
        }
        assert_eq!(plan(&account, &w, &Selection::default()), Plan::default());
    }

    #[test]
    fn selection_by_list_and_pattern() {
        let account = Account {
            numbers: vec![
                number("PN1", "+15550000001"),
                number("PN2", "+15550000002"),
                number("PN3", "+4420000003"),
            ],
            ..Account::default()
        };
        let w = Wiring::example();
        let sel = Selection {
            numbers: vec!["PN2".into()],
            patterns: vec!["+44*".into()],
        };
        let p = plan(&account, &w, &sel);
        let sids: Vec<_> = p.changes.iter().map(|c| c.sid.as_str()).collect();
        assert_eq!(sids, ["PN2", "PN3"]);
        let by_name = Selection {
            patterns: vec!["store +1555*1".into()],
            ..Selection::default()
        };
        assert_eq!(plan(&account, &w, &by_name).changes[0].sid, "PN1");
        let missing = Selection {
            numbers: vec!["+19990000000".into(), "PN1".into()],
            ..Selection::default()
        };
        assert_eq!(missing.missing(&account), ["+19990000000"]);
    }

    #[test]
    fn shared_service_outside_the_selection_is_left_alone() {
        let mut account = Account {
            numbers: vec![number("PN1", "+15550000001"), number("PN2", "+15550000002")],
            ..Account::default()
        };
        account.services.insert(
            "MG1".into(),
            Service {
                sid: "MG1".into(),
                ..Service::default()
            },
        );
        account.service_of.insert("PN1".into(), "MG1".into());
        account.service_of.insert("PN2".into(), "MG1".into());
        let w = Wiring::example();
        let only_one = Selection {
            numbers: vec!["PN1".into()],
            ..Selection::default()
        };
        let p = plan(&account, &w, &only_one);
        assert_eq!(p.skipped.len(), 1, "{p:?}");
        assert!(p.skipped[0].reason.contains("+15550000002"));
        assert!(p
            .changes
            .iter()
            .all(|c| c.kind == Kind::Number && c.sid == "PN1"));
        let p = plan(&account, &w, &Selection::default());
        let service = p.changes.iter().find(|c| c.kind == Kind::Service).unwrap();
        assert_eq!(service.serves, ["+15550000001", "+15550000002"]);
        assert_eq!(service.fields[0].name, "InboundRequestUrl");
        // Numbers whose messaging the Service handles get voice fields only.
        assert!(p.changes[0]
            .fields
            .iter()
            .all(|f| !f.name.starts_with("Sms")));
    }

    #[test]
    fn audit_is_ok_exactly_when_plan_leaves_a_number_alone() {
        use crate::numbers::audit::audit;
        use crate::numbers::audit::tests::{good, s};
        let w = Wiring::example();
        let values = |field: u32| -> Vec<Option<String>> {
            let mut v = vec![None, s("POST"), s("GET"), s("post")];
            if field < 3 {
                v = vec![
                    None,
                    s("https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"),
                    s("https://voice.example.com/voice#ct=2000"),
                    s("https://voice.example.com/voice"),
                    s("https://fallback.example.net/voice"),
                    s("https://voice.example.com/status"),
                ];
            }
            v
        };
        // Each voice setting in turn through values right, wrong and missing, the rest as wired.
        let fields = [
            "url",
            "fallback",
            "status",
            "method",
            "fallback_method",
            "status_method",
        ];
        for (i, field) in fields.iter().enumerate() {
            for value in values(i as u32) {
                let mut n = good("PN1");
                let slot = match *field {
                    "url" => &mut n.voice_url,
                    "fallback" => &mut n.voice_fallback_url,
                    "status" => &mut n.status_callback,
                    "method" => &mut n.voice_method,
                    "fallback_method" => &mut n.voice_fallback_method,
                    _ => &mut n.status_callback_method,
                };
                *slot = value.clone();
                let account = Account {
                    numbers: vec![n],
                    ..Account::default()
                };
                let ok = audit(&account, &w, |_| true)[0].ok();
                let unchanged = plan(&account, &w, &Selection::default()).changes.is_empty();
                assert_eq!(ok, unchanged, "{field} = {value:?}");
            }
        }
    }
}
