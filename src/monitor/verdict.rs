//! From the audit and the probes to the round's [`Status`], and what changed since the last
//! round. Which URLs a round probes ([`targets`]), each number's problems per channel (the audit's,
//! then its URLs' probes and certificates), and the [`History`] that remembers the last verdicts
//! so that a change of state is said once ([`Change`]), not every round. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::probe::{Outcome, Probe, UrlKey};
use super::status::{
    ApiStatus, CertificateStatus, ChannelStatus, Kind, NumberStatus, Problem, Status, UrlStatus,
};
use crate::numbers::audit::{on_base, ChannelAudit, NumberAudit, Source};
use crate::numbers::wiring::{Channel, Wiring};
use crate::twilio::overrides::split_fragment;
use crate::twilio::Role;

/// The URLs a round probes, and the ones it leaves out.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// At most `max` distinct URLs, in the account's order.
    pub probes: Vec<Probe>,
    /// How many selected numbers use each URL.
    pub users: BTreeMap<UrlKey, usize>,
    /// URLs beyond `max`.
    pub skipped: BTreeSet<UrlKey>,
}

fn channels(a: &NumberAudit) -> [(Channel, &ChannelAudit); 2] {
    [(Channel::Voice, &a.voice), (Channel::Sms, &a.sms)]
}

/// The distinct primary and fallback URLs of the audited numbers' channels (a SIP trunk has
/// none). A URL on the wiring's primary or fallback base, or under a `signed` prefix, gets a
/// signed webhook; the first `max` distinct URLs are probed.
pub fn targets(audits: &[NumberAudit], wiring: &Wiring, signed: &[String], max: usize) -> Targets {
    let mut out = Targets::default();
    for a in audits {
        for (channel, c) in channels(a) {
            let primary = c.handling.url.as_deref();
            for (role, url) in [
                (Role::Primary, primary),
                (Role::Fallback, c.handling.fallback_url.as_deref()),
            ] {
                let Some(url) = url else { continue };
                let key = UrlKey {
                    url: url.to_string(),
                    channel,
                    role,
                };
                let users = out.users.entry(key.clone()).or_insert(0);
                *users += 1;
                if *users > 1 || out.skipped.contains(&key) {
                    continue;
                }
                if out.probes.len() >= max {
                    out.skipped.insert(key);
                    continue;
                }
                let bare = split_fragment(url).0;
                out.probes.push(Probe {
                    signed: on_base(bare, &wiring.primary_base)
                        || on_base(bare, &wiring.fallback_base)
                        || signed.iter().any(|p| bare.starts_with(p.as_str())),
                    error_url: (role == Role::Fallback)
                        .then(|| primary.map(str::to_string))
                        .flatten(),
                    to: a.phone_number.clone(),
                    key,
                });
            }
        }
    }
    out
}

/// Whether a certificate is a problem now: refused, or expiring within `warning`.
fn certificate_problem(
    c: &CertificateStatus,
    warning: Duration,
    now: SystemTime,
) -> Option<String> {
    let left = c.not_after.map(|t| match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    });
    let when = c
        .not_after
        .map(super::status::rfc3339_text)
        .unwrap_or_else(|| "(unreadable)".into());
    match left {
        Some(s) if s <= 0.0 => Some(format!("the certificate of {} expired {when}", c.host)),
        Some(s) if s < warning.as_secs_f64() => Some(format!(
            "the certificate of {} expires {when}, in {:.1} days",
            c.host,
            s / 86_400.0
        )),
        _ => None,
    }
}

/// The certificate as the status shows it.
fn certificate_status(o: &Outcome, now: SystemTime) -> Option<CertificateStatus> {
    let c = o.certificate.as_ref()?;
    Some(CertificateStatus {
        host: c.host.clone(),
        valid: c.refused.is_none(),
        not_after: c.not_after,
        days_left: c.not_after.map(|t| match t.duration_since(now) {
            Ok(d) => d.as_secs_f64() / 86_400.0,
            Err(e) => -e.duration().as_secs_f64() / 86_400.0,
        }),
        error: c.refused.clone(),
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The audit's problems of a channel, as the status shows them.
fn audit_problems(c: &ChannelAudit) -> Vec<Problem> {
    c.problems
        .iter()
        .map(|p| Problem {
            kind: Kind::Wiring(p.kind),
            detail: p.detail.clone(),
        })
        .collect()
}

/// A channel's primary and fallback URLs, each with the problem kind its failing probe is; none
/// for a SIP trunk.
fn channel_urls(c: &ChannelAudit) -> impl Iterator<Item = (Role, &str, Kind)> {
    let is_trunk = matches!(c.source, Source::Trunk(_));
    [
        (Role::Primary, &c.handling.url, Kind::PrimaryFailing),
        (
            Role::Fallback,
            &c.handling.fallback_url,
            Kind::FallbackFailing,
        ),
    ]
    .into_iter()
    .filter_map(move |(role, url, kind)| {
        let url = url.as_deref().filter(|_| !is_trunk)?;
        Some((role, url, kind))
    })
}

/// The problem of a URL whose probe failed: its role, the URL without its fragment, the
/// ErrorCode and the failure.
fn probe_problem(kind: Kind, role: Role, url: &str, u: &UrlStatus) -> Problem {
    Problem {
        kind,
        detail: format!(
            "{} {}: {} {}",
            role.as_str(),
            split_fragment(url).0,
            u.error_code.unwrap_or(0),
            u.detail.as_deref().unwrap_or("")
        ),
    }
}

/// One problem for all the channel's expiring certificates and one for its URLs left unprobed,
/// each only when there are some.
fn grouped_problems(expiring: &[String], not_probed: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !expiring.is_empty() {
        problems.push(Problem {
            kind: Kind::CertificateExpiring,
            detail: expiring.join("; "),
        });
    }
    if !not_probed.is_empty() {
        problems.push(Problem {
            kind: Kind::NotProbed,
            detail: format!("beyond --max-urls: {}", not_probed.join(", ")),
        });
    }
    problems
}

/// One channel's problems: the audit's, then what the probes of its URLs found.
fn channel_status(
    c: &ChannelAudit,
    channel: Channel,
    urls: &BTreeMap<UrlKey, UrlStatus>,
    skipped: &BTreeSet<UrlKey>,
    warning: Duration,
    now: SystemTime,
) -> ChannelStatus {
    let mut problems = audit_problems(c);
    let mut expiring = Vec::new();
    let mut not_probed = Vec::new();
    for (role, url, kind) in channel_urls(c) {
        let key = UrlKey {
            url: url.to_string(),
            channel,
            role,
        };
        if skipped.contains(&key) {
            not_probed.push(url.to_string());
            continue;
        }
        let Some(u) = urls.get(&key) else { continue };
        if !u.ok {
            problems.push(probe_problem(kind, role, url, u));
        }
        if let Some(why) = u
            .certificate
            .as_ref()
            .and_then(|c| certificate_problem(c, warning, now))
        {
            if !expiring.contains(&why) {
                expiring.push(why);
            }
        }
    }
    problems.extend(grouped_problems(&expiring, &not_probed));
    ChannelStatus {
        source: c.source.clone(),
        primary_url: c.handling.url.clone(),
        fallback_url: c.handling.fallback_url.clone(),
        problems,
    }
}

/// `ok`, `failing` or `unknown`: a state in a change line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not judged before (the first round, or a number or URL new to the account).
    Unknown,
    /// Passed.
    Ok,
    /// Failed.
    Failing,
}

impl State {
    /// The word in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Ok => "ok",
            State::Failing => "failing",
        }
    }

    fn of(ok: bool) -> State {
        if ok {
            State::Ok
        } else {
            State::Failing
        }
    }
}

/// A certificate's state in a change line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Not seen before.
    Unknown,
    /// Valid, and not expiring within the warning.
    Valid,
    /// Valid, expiring within the warning.
    Expiring,
    /// Refused (expired, another name, an unknown issuer).
    Invalid,
}

impl CertState {
    /// The word in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Unknown => "unknown",
            CertState::Valid => "valid",
            CertState::Expiring => "expiring",
            CertState::Invalid => "invalid",
        }
    }
}

/// Something that changed since the last round: one log line each.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A number's channel passed and now fails, or the other way, or fails for other reasons.
    Number {
        /// E.164.
        number: String,
        /// `PN…`.
        sid: String,
        /// Which channel.
        channel: Channel,
        /// Before.
        was: State,
        /// Now.
        now: State,
        /// The problem kinds now, comma-separated.
        problems: String,
        /// Their details, `; `-separated.
        detail: String,
    },
    /// A URL's probe started or stopped failing, or fails with another ErrorCode.
    Probe {
        /// Which URL.
        key: UrlKey,
        /// Before.
        was: State,
        /// Now.
        now: State,
        /// Twilio's ErrorCode now.
        error_code: Option<u16>,
        /// The failure now.
        detail: Option<String>,
    },
    /// A certificate became valid, expiring or invalid.
    Certificate {
        /// `host:port`.
        host: String,
        /// Before.
        was: CertState,
        /// Now.
        now: CertState,
        /// Its `notAfter`.
        not_after: Option<SystemTime>,
        /// Why it is a problem.
        detail: Option<String>,
    },
}

/// What the last rounds found, to say each change once and to date each verdict.
#[derive(Debug, Default)]
pub struct History {
    /// Per number and channel: passing, and the problem kinds.
    channels: BTreeMap<(String, Channel), (bool, Vec<Kind>)>,
    /// Per number: passing, since when.
    numbers: BTreeMap<String, (bool, SystemTime)>,
    /// Per URL: passing, failing rounds in a row, ErrorCode, since when.
    urls: BTreeMap<UrlKey, (bool, u32, Option<u16>, SystemTime)>,
    /// Per certificate host.
    certificates: BTreeMap<String, CertState>,
}

/// What a round found, before it is dated and compared with the last one.
#[derive(Debug)]
pub struct Found<'a> {
    /// Rounds since start, from 1.
    pub round: u64,
    /// When the round started and ended.
    pub started_at: SystemTime,
    /// When it ended: the "now" of expiry and of `since`.
    pub finished_at: SystemTime,
    /// The audit of each selected number; `None` before the numbers were ever read.
    pub audits: Option<&'a [NumberAudit]>,
    /// The URLs probed and skipped.
    pub targets: &'a Targets,
    /// The outcome of each probe, in `targets.probes`' order.
    pub outcomes: &'a [Outcome],
    /// The reads.
    pub api: ApiStatus,
    /// Selected numbers the account lacks.
    pub missing: Vec<String>,
    /// `--certificate-warning-days`.
    pub warning: Duration,
}

/// A URL's verdict as [`History`] remembers it: passing, failing rounds in a row, ErrorCode,
/// since when.
type UrlVerdict = (bool, u32, Option<u16>, SystemTime);

/// A certificate's state: refused, expiring within `warning`, or valid.
fn cert_state(c: &CertificateStatus, warning: Duration, now: SystemTime) -> CertState {
    if !c.valid {
        CertState::Invalid
    } else if certificate_problem(c, warning, now).is_some() {
        CertState::Expiring
    } else {
        CertState::Valid
    }
}

/// A probed URL as the status shows it: its dated verdict, the probe's timings and failure, and
/// how many selected numbers use it.
fn url_status(
    probe: &Probe,
    outcome: &Outcome,
    (ok, failing_rounds, code, since): UrlVerdict,
    certificate: Option<CertificateStatus>,
    numbers: usize,
) -> UrlStatus {
    UrlStatus {
        url: probe.key.url.clone(),
        channel: probe.key.channel,
        role: probe.key.role,
        check: outcome.check,
        ok,
        since,
        failing_rounds,
        error_code: code,
        detail: outcome
            .failure
            .as_ref()
            .map(|f| format!("{}: {}", f.title(), f.detail))
            .or_else(|| outcome.note.clone()),
        http_status: outcome.failure.as_ref().and_then(|f| f.http_status),
        first_byte_ms: outcome.first_byte.map(ms),
        total_ms: ms(outcome.total),
        read_timeout_ms: ms(outcome.read_timeout),
        total_timeout_ms: ms(outcome.total_timeout),
        certificate,
        numbers,
    }
}

impl History {
    /// Dates the round's verdicts, compares them with the last round's and remembers them.
    pub fn update(&mut self, found: Found<'_>) -> (Status, Vec<Change>) {
        let now = found.finished_at;
        let mut changes = Vec::new();
        let mut urls = self.judge_probes(&found, &mut changes);
        let numbers = self.judge_numbers(&found, &urls, &mut changes);
        let mut status = Status {
            round: found.round,
            started_at: found.started_at,
            finished_at: now,
            ok: false,
            summary: String::new(),
            api: found.api,
            missing: found.missing,
            numbers,
            urls: found
                .targets
                .probes
                .iter()
                .filter_map(|p| urls.remove(&p.key))
                .collect(),
        };
        status.ok = found.audits.is_some()
            && status.api.complete
            && status.missing.is_empty()
            && status.numbers.iter().all(|n| n.ok);
        status.summary = status.summarize();
        (status, changes)
    }

    /// The round's probed URLs as the status shows them; remembers their verdicts and their
    /// certificates' states (forgetting URLs and hosts no longer probed), and adds a change for
    /// each that changed.
    fn judge_probes(
        &mut self,
        found: &Found<'_>,
        changes: &mut Vec<Change>,
    ) -> BTreeMap<UrlKey, UrlStatus> {
        let now = found.finished_at;
        let mut urls = BTreeMap::new();
        let mut seen_hosts = BTreeMap::new();
        for (probe, outcome) in found.targets.probes.iter().zip(found.outcomes) {
            let verdict = self.judge_url(probe, outcome, now, changes);
            let certificate = certificate_status(outcome, now);
            if let Some(c) = &certificate {
                let state = cert_state(c, found.warning, now);
                seen_hosts
                    .entry(c.host.clone())
                    .or_insert((state, c.clone()));
            }
            let numbers = found.targets.users.get(&probe.key).copied().unwrap_or(0);
            urls.insert(
                probe.key.clone(),
                url_status(probe, outcome, verdict, certificate, numbers),
            );
        }
        self.urls.retain(|k, _| urls.contains_key(k));
        self.judge_certificates(&seen_hosts, found.warning, now, changes);
        urls
    }

    /// One URL's verdict, dated against the last round's and remembered. A change when its probe
    /// started or stopped failing (a first pass is not one) or fails with another ErrorCode.
    fn judge_url(
        &mut self,
        probe: &Probe,
        outcome: &Outcome,
        now: SystemTime,
        changes: &mut Vec<Change>,
    ) -> UrlVerdict {
        let ok = outcome.ok();
        let code = outcome.failure.as_ref().map(|f| f.code);
        let (was_ok, rounds, was_code, since) = match self.urls.get(&probe.key) {
            Some(&(was, rounds, was_code, since)) => (Some(was), rounds, was_code, since),
            None => (None, 0, None, now),
        };
        let failing_rounds = if ok { 0 } else { rounds + 1 };
        let since = if was_ok == Some(ok) { since } else { now };
        if was_ok != Some(ok) && !(was_ok.is_none() && ok) || (!ok && was_code != code) {
            changes.push(Change::Probe {
                key: probe.key.clone(),
                was: was_ok.map_or(State::Unknown, State::of),
                now: State::of(ok),
                error_code: code,
                detail: outcome.failure.as_ref().map(|f| f.detail.clone()),
            });
        }
        let verdict = (ok, failing_rounds, code, since);
        self.urls.insert(probe.key.clone(), verdict);
        verdict
    }

    /// Remembers the state of each certificate seen this round, forgetting the others. A change
    /// when a host's state changed (a first valid one is not one).
    fn judge_certificates(
        &mut self,
        seen_hosts: &BTreeMap<String, (CertState, CertificateStatus)>,
        warning: Duration,
        now: SystemTime,
        changes: &mut Vec<Change>,
    ) {
        for (host, (state, c)) in seen_hosts {
            let was = self
                .certificates
                .get(host)
                .copied()
                .unwrap_or(CertState::Unknown);
            let quiet_start = was == CertState::Unknown && *state == CertState::Valid;
            if was != *state && !quiet_start {
                changes.push(Change::Certificate {
                    host: host.clone(),
                    was,
                    now: *state,
                    not_after: c.not_after,
                    detail: c
                        .error
                        .clone()
                        .or_else(|| certificate_problem(c, warning, now)),
                });
            }
            self.certificates.insert(host.clone(), *state);
        }
        self.certificates.retain(|h, _| seen_hosts.contains_key(h));
    }

    /// Each audited number as the status shows it, its channels judged from the audit and the
    /// round's URL verdicts; forgets numbers no longer audited once the numbers were read.
    fn judge_numbers(
        &mut self,
        found: &Found<'_>,
        urls: &BTreeMap<UrlKey, UrlStatus>,
        changes: &mut Vec<Change>,
    ) -> Vec<NumberStatus> {
        let now = found.finished_at;
        let mut numbers = Vec::new();
        let mut present = BTreeSet::new();
        for a in found.audits.unwrap_or_default() {
            present.insert(a.sid.clone());
            let status = |c, channel| {
                channel_status(c, channel, urls, &found.targets.skipped, found.warning, now)
            };
            let voice = status(&a.voice, Channel::Voice);
            let sms = status(&a.sms, Channel::Sms);
            for (channel, c) in [(Channel::Voice, &voice), (Channel::Sms, &sms)] {
                self.judge_channel(a, channel, c, changes);
            }
            numbers.push(self.number_status(a, voice, sms, now));
        }
        if found.audits.is_some() {
            self.numbers.retain(|sid, _| present.contains(sid));
            self.channels.retain(|(sid, _), _| present.contains(sid));
        }
        numbers
    }

    /// Remembers a number's channel verdict. A change when it passes or fails unlike last
    /// round, or fails for other reasons (a first pass is not one).
    fn judge_channel(
        &mut self,
        a: &NumberAudit,
        channel: Channel,
        c: &ChannelStatus,
        changes: &mut Vec<Change>,
    ) {
        let ok = c.problems.is_empty();
        let kinds: Vec<Kind> = c.problems.iter().map(|p| p.kind).collect();
        let key = (a.sid.clone(), channel);
        let was = self.channels.get(&key);
        let changed = match was {
            None => !ok,
            Some((was_ok, was_kinds)) => *was_ok != ok || *was_kinds != kinds,
        };
        if changed {
            changes.push(Change::Number {
                number: a.phone_number.clone(),
                sid: a.sid.clone(),
                channel,
                was: was.map_or(State::Unknown, |(ok, _)| State::of(*ok)),
                now: State::of(ok),
                problems: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
                detail: c
                    .problems
                    .iter()
                    .map(|p| p.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        self.channels.insert(key, (ok, kinds));
    }

    /// A number as the status shows it: passing when both channels do, since when it last
    /// changed (remembered).
    fn number_status(
        &mut self,
        a: &NumberAudit,
        voice: ChannelStatus,
        sms: ChannelStatus,
        now: SystemTime,
    ) -> NumberStatus {
        let ok = voice.problems.is_empty() && sms.problems.is_empty();
        let since = match self.numbers.get(&a.sid) {
            Some(&(was, since)) if was == ok => since,
            _ => now,
        };
        self.numbers.insert(a.sid.clone(), (ok, since));
        NumberStatus {
            sid: a.sid.clone(),
            phone_number: a.phone_number.clone(),
            friendly_name: a.friendly_name.clone(),
            ok,
            since,
            voice,
            sms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::twilio::Failure;
    use crate::monitor::probe::{Certificate, Check};
    use crate::numbers::audit::{audit, tests::good};
    use crate::numbers::model::Account;

    fn outcome(code: Option<u16>, cert_days: Option<f64>, now: SystemTime) -> Outcome {
        Outcome {
            check: Check::Webhook,
            failure: code.map(|code| Failure {
                code,
                detail: "connection refused".into(),
                http_status: None,
            }),
            first_byte: None,
            total: Duration::from_millis(3),
            read_timeout: Duration::from_secs(4),
            total_timeout: Duration::from_secs(6),
            certificate: cert_days.map(|d| Certificate {
                host: "fallback.example.net:443".into(),
                not_after: Some(now + Duration::from_secs_f64(d * 86_400.0)),
                refused: None,
            }),
            note: None,
        }
    }

    fn api() -> ApiStatus {
        ApiStatus {
            requests: 3,
            throttled: 0,
            errors: 0,
            budget: 200,
            complete: true,
            full_read: false,
            oldest_page_age_seconds: None,
            error: None,
        }
    }

    #[test]
    fn each_url_is_probed_once_and_only_the_failover_bases_get_a_signed_webhook() {
        let w = Wiring::example();
        let mut other = good("PN2");
        other.phone_number = "+15550002222".into();
        other.sms_url = Some("https://crm.example.org/in".into());
        let account = Account {
            numbers: vec![good("PN1"), other],
            ..Account::default()
        };
        let audits = audit(&account, &w, |_| true);
        let t = targets(&audits, &w, &[], 100);
        let urls: Vec<(&str, bool)> = t
            .probes
            .iter()
            .map(|p| (p.key.url.as_str(), p.signed))
            .collect();
        assert_eq!(
            urls,
            [
                (
                    "https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct",
                    true
                ),
                ("https://fallback.example.net/voice", true),
                (
                    "https://voice.example.com/sms#ct=1000&rt=4000&tt=6000&rc=1&rp=ct",
                    true
                ),
                ("https://fallback.example.net/sms", true),
                ("https://crm.example.org/in", false),
            ]
        );
        assert_eq!(
            t.probes[1].error_url.as_deref(),
            Some("https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct")
        );
        assert_eq!(t.users[&t.probes[1].key], 2);
        let opted = targets(&audits, &w, &["https://crm.example.org/".into()], 100);
        assert!(opted.probes[4].signed);
        let capped = targets(&audits, &w, &[], 2);
        assert_eq!(capped.probes.len(), 2);
        assert_eq!(capped.skipped.len(), 3);
    }

    #[test]
    fn changes_are_said_once_and_verdicts_dated_from_when_they_began() {
        let w = Wiring::example();
        let account = Account {
            numbers: vec![good("PN1")],
            ..Account::default()
        };
        let audits = audit(&account, &w, |_| true);
        let t = targets(&audits, &w, &[], 100);
        let mut h = History::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let round = |h: &mut History, n: u64, fallback: Option<u16>, days: f64| {
            let now = t0 + Duration::from_secs(300 * n);
            let outcomes: Vec<Outcome> = t
                .probes
                .iter()
                .map(|p| {
                    let code = (p.key.role == Role::Fallback && p.key.channel == Channel::Voice)
                        .then_some(fallback)
                        .flatten();
                    outcome(code, Some(days), now)
                })
                .collect();
            h.update(Found {
                round: n,
                started_at: now,
                finished_at: now,
                audits: Some(&audits),
                targets: &t,
                outcomes: &outcomes,
                api: api(),
                missing: Vec::new(),
                warning: Duration::from_secs(14 * 86_400),
            })
        };
        // First round, all well: nothing to say.
        let (s, changes) = round(&mut h, 1, None, 90.0);
        assert!(s.ok, "{}", s.summary);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(s.summary, "1 number: 1 ok, 0 failing");
        // The voice fallback fails: one probe line, one number line.
        let (s, changes) = round(&mut h, 2, Some(11205), 90.0);
        assert!(!s.ok);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(
            &changes[0],
            Change::Probe {
                was: State::Ok,
                now: State::Failing,
                error_code: Some(11205),
                ..
            }
        ));
        match &changes[1] {
            Change::Number {
                channel,
                was,
                now,
                problems,
                detail,
                ..
            } => {
                assert_eq!(
                    (*channel, *was, *now),
                    (Channel::Voice, State::Ok, State::Failing)
                );
                assert_eq!(problems, "fallback_failing");
                assert_eq!(
                    detail,
                    "fallback https://fallback.example.net/voice: 11205 HTTP connection failure: \
                     connection refused"
                );
            }
            other => panic!("{other:?}"),
        }
        let failing_since = s.numbers[0].since;
        assert_eq!(s.summary, "1 number: 0 ok, 1 failing (fallback_failing 1)");
        let fallback = s.urls.iter().find(|u| !u.ok).unwrap();
        assert_eq!(
            (fallback.failing_rounds, fallback.error_code),
            (1, Some(11205))
        );
        // Still failing the same way: silence, and the verdict keeps its date.
        let (s, changes) = round(&mut h, 3, Some(11205), 90.0);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(s.numbers[0].since, failing_since);
        assert_eq!(s.urls.iter().find(|u| !u.ok).unwrap().failing_rounds, 2);
        // Fixed, but the certificate now expires within 14 days.
        let (s, changes) = round(&mut h, 4, None, 3.0);
        let kinds: Vec<&str> = s.numbers[0]
            .voice
            .problems
            .iter()
            .map(|p| p.kind.name())
            .collect();
        assert_eq!(kinds, ["certificate_expiring"]);
        assert!(changes.iter().any(|c| matches!(
            c,
            Change::Certificate {
                was: CertState::Valid,
                now: CertState::Expiring,
                ..
            }
        )));
        assert!(changes.iter().any(|c| matches!(
            c,
            Change::Probe {
                was: State::Failing,
                now: State::Ok,
                ..
            }
        )));
        assert_eq!(
            s.failing_by_kind()
                .iter()
                .find(|(k, _)| *k == Kind::CertificateExpiring)
                .unwrap()
                .1,
            1
        );
    }
}
