//! The drill's findings per scenario, the verdict rules, and their text and JSON renderings.

use std::fmt::Write as _;

use serde::Serialize;

use super::fault::Fault;
use super::twilio::{Failure, Fetch, Method};
use super::Scenario;
use crate::twilio::overrides::VOICE_HARD_CAP;
use crate::twilio::Channel;

/// Which URL produced the TwiML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The number's primary URL.
    Primary,
    /// Its "Primary handler fails" URL.
    Fallback,
}

/// The judgement on one scenario.
// Ordered from best to worst, which `Report::passes` relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Valid TwiML within the time budget.
    Pass,
    /// Valid TwiML, but something needs a look (over budget, overrides adjusted).
    Warn,
    /// No valid TwiML: the caller would hear Twilio's error message, or the SMS gets no reply.
    Fail,
}

/// The lowest verdict that makes `drill` exit 1 (`--fail-on`): a fallback that answers after
/// Twilio's 15 s budget is a failed fallback for a caller, so scheduled drills use `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// WARN or FAIL exit 1.
    Warn,
    /// Only FAIL exits 1.
    Fail,
}

/// The step after the first answer (a `<Gather>` action or a `<Redirect>`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Follow {
    /// `Gather` or `Redirect`.
    pub verb: String,
    /// The resolved URL (no fragment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How it was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The `Digits` sent to a `<Gather>` action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    /// Why the step was not taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The request and its outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Fetch>,
    /// Verbs of the answer.
    pub verbs: Vec<String>,
    /// TwiML problems for the voice channel.
    pub twiml_problems: Vec<String>,
}

impl Follow {
    fn failed(&self) -> Option<String> {
        let fetch = self.fetch.as_ref()?;
        if let Some(f) = &fetch.failure {
            return Some(format!(
                "the <{}> step failed: {} {}: {}",
                self.verb,
                f.code,
                f.title(),
                f.detail
            ));
        }
        if !self.twiml_problems.is_empty() {
            return Some(format!("the <{}> step returned invalid TwiML", self.verb));
        }
        None
    }
}

/// Everything the drill found out about one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Which scenario.
    pub scenario: Scenario,
    /// `voice` or `messaging`.
    pub channel: &'static str,
    /// Who produced the TwiML; absent when nobody did.
    pub answered_by: Option<Side>,
    /// Why the primary was abandoned (the `ErrorCode` sent to the fallback).
    pub abandoned_because: Option<Failure>,
    /// From the first request to the TwiML (or to giving up).
    pub time_to_answer_ms: u64,
    /// Twilio's budget for the answer (15 s).
    pub budget_ms: u64,
    /// Verbs directly under `<Response>` in the answer.
    pub verbs: Vec<String>,
    /// TwiML problems for the channel (Twilio's 12200 class); any makes the answer invalid.
    pub twiml_problems: Vec<String>,
    /// The request to the primary.
    pub primary: Option<Fetch>,
    /// The request to the fallback, when the primary failed.
    pub fallback: Option<Fetch>,
    /// True when no fallback URL was configured for this channel.
    pub no_fallback_url: bool,
    /// The `<Gather>`/`<Redirect>` step, for those scenarios.
    pub follow: Option<Follow>,
    /// Assumptions made along the way (overrides clamped or ignored).
    pub warnings: Vec<String>,
    /// The judgement.
    pub verdict: Verdict,
    /// The judgement in one sentence.
    pub summary: String,
}

impl ScenarioReport {
    pub(super) fn new(scenario: Scenario, channel: Channel) -> ScenarioReport {
        ScenarioReport {
            scenario,
            channel: channel.as_str(),
            answered_by: None,
            abandoned_because: None,
            time_to_answer_ms: 0,
            budget_ms: u64::try_from(VOICE_HARD_CAP.as_millis()).unwrap_or(15_000),
            verbs: Vec::new(),
            twiml_problems: Vec::new(),
            primary: None,
            fallback: None,
            no_fallback_url: false,
            follow: None,
            warnings: Vec::new(),
            verdict: Verdict::Fail,
            summary: String::new(),
        }
    }

    pub(super) fn unusable(scenario: Scenario, why: String) -> ScenarioReport {
        let mut r = ScenarioReport::new(scenario, scenario.channel());
        r.summary = format!("not run: {why}");
        r
    }

    /// Sets `verdict` and `summary` from the findings.
    pub(super) fn judge(&mut self) {
        let seconds = self.time_to_answer_ms as f64 / 1000.0;
        let budget = self.budget_ms as f64 / 1000.0;
        let Some(side) = self.answered_by else {
            self.verdict = Verdict::Fail;
            self.summary = if self.no_fallback_url {
                "no TwiML: the primary failed and no fallback URL is configured".into()
            } else {
                "no TwiML: both the primary and the fallback failed".into()
            };
            self.summary.push_str(match self.channel {
                "voice" => " (the caller hears Twilio's error message)",
                _ => " (the message gets no reply)",
            });
            return;
        };
        let side = match side {
            Side::Primary => "primary",
            Side::Fallback => "fallback",
        };
        if !self.twiml_problems.is_empty() {
            self.verdict = Verdict::Fail;
            self.summary = format!(
                "the {side} answered, but its TwiML is not valid {} TwiML",
                self.channel
            );
            return;
        }
        if let Some(why) = self.follow.as_ref().and_then(Follow::failed) {
            self.verdict = Verdict::Fail;
            self.summary = why;
            return;
        }
        self.verdict = if self.time_to_answer_ms > self.budget_ms {
            Verdict::Warn
        } else if self.warnings.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Warn
        };
        self.summary = format!(
            "the {side} answered with valid TwiML in {seconds:.2} s ({} the {budget:.1} s budget)",
            if self.time_to_answer_ms > self.budget_ms {
                "OVER"
            } else {
                "within"
            }
        );
        if let Some(f) = self.follow.as_ref().filter(|f| f.fetch.is_some()) {
            let _ = write!(
                self.summary,
                "; its <{}> step answered {}",
                f.verb,
                f.verbs.join(", ")
            );
        }
    }
}

/// The drill's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Set when the primary was the local fault server.
    pub simulated_primary_failure: Option<Fault>,
    /// One entry per scenario, in the order run.
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    /// True when every scenario got valid TwiML (warnings allowed).
    pub fn ok(&self) -> bool {
        self.passes(FailOn::Fail)
    }

    /// True when no scenario's verdict is at or above `fail_on`.
    pub fn passes(&self, fail_on: FailOn) -> bool {
        let worst_allowed = match fail_on {
            FailOn::Warn => Verdict::Pass,
            FailOn::Fail => Verdict::Warn,
        };
        self.scenarios.iter().all(|s| s.verdict <= worst_allowed)
    }

    /// Pretty JSON for machines.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The text report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(f) = self.simulated_primary_failure {
            let name = serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "simulated primary failure: {name} (the primary is a local fault server)\n"
            );
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "scenario {} ({})", s.scenario.as_str(), s.channel);
            if let Some(p) = &s.primary {
                fetch_lines(&mut out, "primary ", p);
            }
            if let Some(f) = &s.abandoned_because {
                let _ = writeln!(out, "  abandoned: {} {}: {}", f.code, f.title(), f.detail);
            }
            if let Some(f) = &s.fallback {
                fetch_lines(&mut out, "fallback", f);
            } else if s.abandoned_because.is_some() && s.no_fallback_url {
                let _ = writeln!(out, "  fallback  (no fallback URL configured)");
            }
            if !s.verbs.is_empty() {
                let _ = writeln!(out, "  verbs:    {}", s.verbs.join(", "));
            }
            for p in &s.twiml_problems {
                let _ = writeln!(out, "  twiml:    {p}");
            }
            if let Some(f) = &s.follow {
                match (&f.skipped, &f.fetch) {
                    (Some(why), _) => {
                        let _ = writeln!(out, "  next:     <{}> not followed: {why}", f.verb);
                    }
                    (None, Some(fetch)) => {
                        let digits = f
                            .digits
                            .as_ref()
                            .map(|d| format!(" with Digits={d}"))
                            .unwrap_or_default();
                        let _ = writeln!(out, "  next:     <{}>{digits}", f.verb);
                        fetch_lines(&mut out, "next    ", fetch);
                        if !f.verbs.is_empty() {
                            let _ = writeln!(out, "            verbs: {}", f.verbs.join(", "));
                        }
                        for p in &f.twiml_problems {
                            let _ = writeln!(out, "            twiml: {p}");
                        }
                    }
                    (None, None) => {}
                }
            }
            for w in &s.warnings {
                let _ = writeln!(out, "  warning:  {w}");
            }
            let verdict = match s.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            let _ = writeln!(out, "  verdict:  {verdict}: {}\n", s.summary);
        }
        let failed = self
            .scenarios
            .iter()
            .filter(|s| s.verdict == Verdict::Fail)
            .count();
        let _ = writeln!(
            out,
            "{} scenario(s), {} without valid TwiML",
            self.scenarios.len(),
            failed
        );
        out
    }
}

fn fetch_lines(out: &mut String, label: &str, f: &Fetch) {
    let _ = writeln!(out, "  {label}  {}  [{}]", f.url, f.overrides.describe());
    for (i, a) in f.attempts.iter().enumerate() {
        let what = match (&a.failure, a.status) {
            (Some(fail), _) => format!("{} ({})", fail.detail, fail.code),
            (None, Some(status)) => {
                let ct = f.content_type.as_deref().unwrap_or("");
                match &f.source {
                    // A primary in upstream mode: which layer answered (docs/upstream.md).
                    Some(source) => format!("HTTP {status} {ct}, source: {source}"),
                    None => format!("HTTP {status} {ct}"),
                }
            }
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "            attempt {}: {what}, {:.2} s",
            i + 1,
            a.elapsed_ms as f64 / 1000.0
        );
    }
}
