//! What a round leaves behind: the verdict on each number and channel and why, each probed URL's
//! last probe, and how the API reads went. `/status` answers it as JSON (the shape
//! docs/monitor.md shows), the metrics and `--once` read it. Plain data; pure.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use super::probe::Check;
use crate::numbers::audit::{self, Source};
use crate::numbers::wiring::Channel;
use crate::twilio::Role;

/// What is wrong with a number's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The wiring, as `numbers audit` judges it: drift from the wiring file.
    Wiring(audit::Kind),
    /// The primary URL's probe failed.
    PrimaryFailing,
    /// The fallback URL's probe failed.
    FallbackFailing,
    /// A certificate of its URLs expires within the warning, or has expired.
    CertificateExpiring,
    /// Its URLs were beyond `--max-urls`.
    NotProbed,
}

impl Kind {
    /// Every kind, the wiring's first.
    pub fn all() -> impl Iterator<Item = Kind> {
        audit::Kind::ALL.into_iter().map(Kind::Wiring).chain([
            Kind::PrimaryFailing,
            Kind::FallbackFailing,
            Kind::CertificateExpiring,
            Kind::NotProbed,
        ])
    }

    /// Its name in JSON, logs and the `problem` label.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wiring(k) => k.name(),
            Kind::PrimaryFailing => "primary_failing",
            Kind::FallbackFailing => "fallback_failing",
            Kind::CertificateExpiring => "certificate_expiring",
            Kind::NotProbed => "not_probed",
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One problem, with what an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which.
    pub kind: Kind,
    /// What was found.
    pub detail: String,
}

/// One channel of a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelStatus {
    /// Who handles it: the number, a TwiML App, a Messaging Service, a SIP trunk.
    pub source: Source,
    /// The primary URL Twilio calls (fragment included).
    pub primary_url: Option<String>,
    /// Its "Primary handler fails" URL.
    pub fallback_url: Option<String>,
    /// Empty when it passes.
    pub problems: Vec<Problem>,
}

/// One number's last verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NumberStatus {
    /// `PN…`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Its friendly name.
    pub friendly_name: Option<String>,
    /// Both channels pass.
    pub ok: bool,
    /// When the current `ok` began.
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    /// Calls.
    pub voice: ChannelStatus,
    /// Messages.
    pub sms: ChannelStatus,
}

/// A certificate a probed server presented.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificateStatus {
    /// `host:port`.
    pub host: String,
    /// The chain led to a trusted root and named the host.
    pub valid: bool,
    /// The leaf's `notAfter`.
    #[serde(serialize_with = "rfc3339_opt")]
    pub not_after: Option<SystemTime>,
    /// Days from the end of the round to `not_after` (negative once expired).
    pub days_left: Option<f64>,
    /// Why the chain was refused.
    pub error: Option<String>,
}

/// One probed URL's last probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UrlStatus {
    /// As set in Twilio, fragment included.
    pub url: String,
    /// `voice` or `sms`.
    pub channel: Channel,
    /// `primary` or `fallback`.
    pub role: Role,
    /// A signed webhook, or reachability only.
    pub check: Check,
    /// The probe passed.
    pub ok: bool,
    /// When the current `ok` began.
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    /// Rounds in a row it has failed.
    pub failing_rounds: u32,
    /// Twilio's ErrorCode for the failure.
    pub error_code: Option<u16>,
    /// The failure in words, or why the check was reachability only.
    pub detail: Option<String>,
    /// The HTTP status of an answer judged a failure.
    pub http_status: Option<u16>,
    /// Time to the answer's head.
    pub first_byte_ms: Option<u64>,
    /// The whole probe.
    pub total_ms: u64,
    /// What Twilio allows before the first byte (`#rt=`).
    pub read_timeout_ms: u64,
    /// What Twilio allows in all (`#tt=`, voice capped at 15 s).
    pub total_timeout_ms: u64,
    /// What an `https://` server presented.
    pub certificate: Option<CertificateStatus>,
    /// Selected numbers that use it.
    pub numbers: usize,
}

/// How the round's REST reads went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiStatus {
    /// Requests made (each retry counts).
    pub requests: u64,
    /// Of which answered 429.
    pub throttled: u64,
    /// Of which failed otherwise.
    pub errors: u64,
    /// `--api-budget`.
    pub budget: u64,
    /// Every list due was read to its end.
    pub complete: bool,
    /// This round re-read every list.
    pub full_read: bool,
    /// The oldest page the verdicts use.
    pub oldest_page_age_seconds: Option<f64>,
    /// Why the reads stopped early.
    pub error: Option<String>,
}

/// Everything one round found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Rounds since start, from 1.
    pub round: u64,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub finished_at: SystemTime,
    /// Every number passed, the reads were complete and every selected number exists.
    pub ok: bool,
    /// One line: `3 numbers: 2 ok, 1 failing (fallback_failing 1)`.
    pub summary: String,
    /// The REST reads.
    pub api: ApiStatus,
    /// Selected numbers (given by number or sid) the account does not have.
    pub missing: Vec<String>,
    /// Each selected number, in the account's order.
    pub numbers: Vec<NumberStatus>,
    /// Each distinct URL probed.
    pub urls: Vec<UrlStatus>,
}

impl Status {
    /// How many numbers have each problem kind (a number counted once per kind), every kind
    /// listed.
    pub fn failing_by_kind(&self) -> Vec<(Kind, usize)> {
        Kind::all()
            .map(|kind| {
                let n = self
                    .numbers
                    .iter()
                    .filter(|n| {
                        n.voice
                            .problems
                            .iter()
                            .chain(&n.sms.problems)
                            .any(|p| p.kind == kind)
                    })
                    .count();
                (kind, n)
            })
            .collect()
    }

    /// `3 numbers: 2 ok, 1 failing (fallback_failing 1)`.
    pub fn summarize(&self) -> String {
        let ok = self.numbers.iter().filter(|n| n.ok).count();
        let failing = self.numbers.len() - ok;
        let mut out = format!(
            "{} number{}: {ok} ok, {failing} failing",
            self.numbers.len(),
            if self.numbers.len() == 1 { "" } else { "s" }
        );
        let kinds: Vec<String> = self
            .failing_by_kind()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        if !kinds.is_empty() {
            out.push_str(&format!(" ({})", kinds.join(", ")));
        }
        if !self.missing.is_empty() {
            out.push_str(&format!(
                "; not in the account: {}",
                self.missing.join(", ")
            ));
        }
        if !self.api.complete {
            out.push_str("; API reads incomplete");
        }
        out
    }

    /// Only the failing numbers (`/status?failing`).
    pub fn failing_only(&self) -> Status {
        Status {
            numbers: self.numbers.iter().filter(|n| !n.ok).cloned().collect(),
            urls: self.urls.iter().filter(|u| !u.ok).cloned().collect(),
            ..self.clone()
        }
    }
}

/// A time as RFC 3339, whole seconds, UTC.
pub fn rfc3339_text(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_text(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_names() {
        let names: std::collections::BTreeSet<&str> = Kind::all().map(Kind::name).collect();
        assert_eq!(names.len(), Kind::all().count());
        assert!(names.contains("fallback_failing") && names.contains("differs_from_wiring"));
        assert_eq!(
            serde_json::to_value(Kind::Wiring(audit::Kind::NoFallbackUrl)).unwrap(),
            "no_fallback_url"
        );
    }
}
