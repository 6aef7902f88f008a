//! Who really handles each number's calls and messages, whether that wiring survives a dead
//! primary, and where it differs from the wiring file ([`differences`], the one comparison `plan`
//! makes too, so `audit` says `ok` exactly when `plan` has nothing to write). Pure: takes the
//! fetched [`Account`] and the intended [`Wiring`], returns verdicts.
//!
//! Effective handling, as Twilio routes:
//! - voice: a SIP trunk (`trunk_sid`) takes calls without any voice webhook; else a TwiML App
//!   (`voice_application_sid`) supplies the voice URLs; else the number's own.
//! - messaging: a Messaging Service the number is in supplies its inbound and fallback URLs,
//!   unless the Service has `use_inbound_webhook_on_number`; else a TwiML App
//!   (`sms_application_sid`) supplies them; else the number's own.

use serde::Serialize;

use super::model::{set, Account, Number};
use super::wiring::{check_overrides, Channel, Wiring};
use crate::net::url::Target;
use crate::twilio::overrides::split_fragment;

/// The resource whose settings Twilio uses for one channel of a number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "sid", rename_all = "snake_case")]
pub enum Source {
    /// The number's own fields.
    Number,
    /// A TwiML App `AP…`.
    Application(String),
    /// A Messaging Service `MG…`.
    Service(String),
    /// An Elastic SIP Trunk `TK…`: no webhook at all.
    Trunk(String),
}

impl Source {
    /// `number`, `App AP…`, `Service MG…`, `SIP trunk TK…`.
    pub fn label(&self) -> String {
        match self {
            Source::Number => "number".into(),
            Source::Application(s) => format!("App {s}"),
            Source::Service(s) => format!("Service {s}"),
            Source::Trunk(s) => format!("SIP trunk {s}"),
        }
    }

    /// One word for a plain line: `number`, `app:AP…`, `service:MG…`, `trunk:TK…`.
    pub fn short(&self) -> String {
        match self {
            Source::Number => "number".into(),
            Source::Application(s) => format!("app:{s}"),
            Source::Service(s) => format!("service:{s}"),
            Source::Trunk(s) => format!("trunk:{s}"),
        }
    }
}

/// The settings one channel effectively has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Handling {
    /// Primary URL, fragment included.
    pub url: Option<String>,
    /// Its method.
    pub method: Option<String>,
    /// Fallback URL.
    pub fallback_url: Option<String>,
    /// Its method.
    pub fallback_method: Option<String>,
    /// The call status callback (voice only; `None` for messaging).
    pub status_callback: Option<String>,
    /// Its method.
    pub status_callback_method: Option<String>,
}

fn owned(v: &Option<String>) -> Option<String> {
    set(v).map(str::to_string)
}

/// The Service a number is in: listed under the Service, or named in `sms_application_sid`.
pub fn service_of<'a>(account: &'a Account, n: &'a Number) -> Option<&'a str> {
    account
        .service_of
        .get(&n.sid)
        .map(String::as_str)
        .or_else(|| set(&n.sms_application_sid).filter(|s| s.starts_with("MG")))
}

/// Which resource handles `channel` of `n`, and with what settings. A referenced App or Service
/// the account does not list yields its source with no settings (every check then fails).
pub fn effective(account: &Account, n: &Number, channel: Channel) -> (Source, Handling) {
    match channel {
        Channel::Voice => {
            if let Some(trunk) = set(&n.trunk_sid) {
                return (Source::Trunk(trunk.into()), Handling::default());
            }
            if let Some(app) = set(&n.voice_application_sid) {
                let h = account.applications.get(app).map(|a| Handling {
                    url: owned(&a.voice_url),
                    method: owned(&a.voice_method),
                    fallback_url: owned(&a.voice_fallback_url),
                    fallback_method: owned(&a.voice_fallback_method),
                    status_callback: owned(&a.status_callback),
                    status_callback_method: owned(&a.status_callback_method),
                });
                return (Source::Application(app.into()), h.unwrap_or_default());
            }
            (
                Source::Number,
                Handling {
                    url: owned(&n.voice_url),
                    method: owned(&n.voice_method),
                    fallback_url: owned(&n.voice_fallback_url),
                    fallback_method: owned(&n.voice_fallback_method),
                    status_callback: owned(&n.status_callback),
                    status_callback_method: owned(&n.status_callback_method),
                },
            )
        }
        Channel::Sms => {
            if let Some(mg) = service_of(account, n) {
                let service = account.services.get(mg);
                let defers = service.is_some_and(|s| s.use_inbound_webhook_on_number == Some(true));
                if !defers {
                    let h = service.map(|s| Handling {
                        url: owned(&s.inbound_request_url),
                        method: owned(&s.inbound_method),
                        fallback_url: owned(&s.fallback_url),
                        fallback_method: owned(&s.fallback_method),
                        status_callback: None,
                        status_callback_method: None,
                    });
                    return (Source::Service(mg.into()), h.unwrap_or_default());
                }
            }
            if let Some(app) = set(&n.sms_application_sid).filter(|s| !s.starts_with("MG")) {
                let h = account.applications.get(app).map(|a| Handling {
                    url: owned(&a.sms_url),
                    method: owned(&a.sms_method),
                    fallback_url: owned(&a.sms_fallback_url),
                    fallback_method: owned(&a.sms_fallback_method),
                    status_callback: None,
                    status_callback_method: None,
                });
                return (Source::Application(app.into()), h.unwrap_or_default());
            }
            (
                Source::Number,
                Handling {
                    url: owned(&n.sms_url),
                    method: owned(&n.sms_method),
                    fallback_url: owned(&n.sms_fallback_url),
                    fallback_method: owned(&n.sms_fallback_method),
                    status_callback: None,
                    status_callback_method: None,
                },
            )
        }
    }
}

/// What is wrong with a channel's wiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// No primary URL.
    NoPrimaryUrl,
    /// The primary URL is not on the primary base.
    PrimaryNotOnBase,
    /// The primary method is not POST.
    PrimaryMethod,
    /// No fallback URL.
    NoFallbackUrl,
    /// The fallback URL is on the primary's host.
    FallbackSameHost,
    /// The fallback URL is not on the fallback base.
    FallbackNotOnBase,
    /// The fallback method is not POST.
    FallbackMethod,
    /// No `#ct=…` fragment on the primary URL.
    NoOverrides,
    /// Overrides Twilio would not take as written.
    BadOverrides,
    /// The overrides leave the fallback too little of the 15 s voice limit.
    FallbackBudget,
    /// The status callback is not the configured one.
    StatusCallback,
    /// A setting no other check faults differs from what the wiring file wants (other overrides
    /// than `overrides`, another path, an unset method, ...): `plan` rewrites it.
    DiffersFromWiring,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 12] = [
        Kind::NoPrimaryUrl,
        Kind::PrimaryNotOnBase,
        Kind::PrimaryMethod,
        Kind::NoFallbackUrl,
        Kind::FallbackSameHost,
        Kind::FallbackNotOnBase,
        Kind::FallbackMethod,
        Kind::NoOverrides,
        Kind::BadOverrides,
        Kind::FallbackBudget,
        Kind::StatusCallback,
        Kind::DiffersFromWiring,
    ];

    /// Its name in JSON and in metric labels (`no_fallback_url`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::NoPrimaryUrl => "no_primary_url",
            Kind::PrimaryNotOnBase => "primary_not_on_base",
            Kind::PrimaryMethod => "primary_method",
            Kind::NoFallbackUrl => "no_fallback_url",
            Kind::FallbackSameHost => "fallback_same_host",
            Kind::FallbackNotOnBase => "fallback_not_on_base",
            Kind::FallbackMethod => "fallback_method",
            Kind::NoOverrides => "no_overrides",
            Kind::BadOverrides => "bad_overrides",
            Kind::FallbackBudget => "fallback_budget",
            Kind::StatusCallback => "status_callback",
            Kind::DiffersFromWiring => "differs_from_wiring",
        }
    }

    /// How the summary counts numbers with this problem.
    fn summary(self) -> &'static str {
        match self {
            Kind::NoPrimaryUrl => "without a primary URL",
            Kind::PrimaryNotOnBase => "with a primary URL off the primary base",
            Kind::PrimaryMethod => "with a primary method other than POST",
            Kind::NoFallbackUrl => "without a fallback URL",
            Kind::FallbackSameHost => "with the fallback on the primary's host",
            Kind::FallbackNotOnBase => "with a fallback URL off the fallback base",
            Kind::FallbackMethod => "with a fallback method other than POST",
            Kind::NoOverrides => "without connection overrides",
            Kind::BadOverrides => "with invalid connection overrides",
            Kind::FallbackBudget => "whose overrides leave the fallback too little time",
            Kind::StatusCallback => "with another status callback",
            Kind::DiffersFromWiring => "with settings that differ from the wiring file",
        }
    }

    /// The setting whose fault this is: its difference from the wiring file needs no second line.
    fn setting(self) -> Option<Setting> {
        match self {
            Kind::NoPrimaryUrl
            | Kind::PrimaryNotOnBase
            | Kind::NoOverrides
            | Kind::BadOverrides
            | Kind::FallbackBudget => Some(Setting::Url),
            Kind::PrimaryMethod => Some(Setting::Method),
            Kind::NoFallbackUrl | Kind::FallbackSameHost | Kind::FallbackNotOnBase => {
                Some(Setting::FallbackUrl)
            }
            Kind::FallbackMethod => Some(Setting::FallbackMethod),
            Kind::StatusCallback => Some(Setting::StatusCallback),
            Kind::DiffersFromWiring => None,
        }
    }
}

/// One setting of a channel, wherever it lives (number, App or Service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// The primary URL, overrides included.
    Url,
    /// Its method.
    Method,
    /// The fallback URL.
    FallbackUrl,
    /// Its method.
    FallbackMethod,
    /// The call status callback.
    StatusCallback,
    /// Its method.
    StatusCallbackMethod,
}

impl Setting {
    /// The form parameter that writes it on the resource `source` names (`VoiceFallbackUrl`,
    /// `InboundRequestUrl`).
    pub fn api_field(self, source: &Source, channel: Channel) -> &'static str {
        match (source, channel, self) {
            (Source::Service(_), _, Setting::Url) => "InboundRequestUrl",
            (Source::Service(_), _, Setting::Method) => "InboundMethod",
            (Source::Service(_), _, Setting::FallbackUrl) => "FallbackUrl",
            (Source::Service(_), _, Setting::FallbackMethod) => "FallbackMethod",
            (_, Channel::Voice, Setting::Url) => "VoiceUrl",
            (_, Channel::Voice, Setting::Method) => "VoiceMethod",
            (_, Channel::Voice, Setting::FallbackUrl) => "VoiceFallbackUrl",
            (_, Channel::Voice, Setting::FallbackMethod) => "VoiceFallbackMethod",
            (_, Channel::Sms, Setting::Url) => "SmsUrl",
            (_, Channel::Sms, Setting::Method) => "SmsMethod",
            (_, Channel::Sms, Setting::FallbackUrl) => "SmsFallbackUrl",
            (_, Channel::Sms, Setting::FallbackMethod) => "SmsFallbackMethod",
            // Calls only: a Service never handles them.
            (_, _, Setting::StatusCallback) => "StatusCallback",
            (_, _, Setting::StatusCallbackMethod) => "StatusCallbackMethod",
        }
    }
}

/// A setting whose value is not the one the wiring file wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Which.
    pub setting: Setting,
    /// What it has (`None`: unset).
    pub old: Option<String>,
    /// What the wiring file wants.
    pub new: String,
}

/// Where `h` differs from what `w` wants for `channel`, in update order: what `plan` writes and
/// what `audit` reports. Methods compare without case; an unset one differs from `POST`.
pub fn differences(channel: Channel, h: &Handling, w: &Wiring) -> Vec<Difference> {
    let intended = w.intended(channel);
    let post = || Some("POST".to_string());
    let mut wanted = vec![
        (Setting::Url, &h.url, Some(intended.url)),
        (Setting::Method, &h.method, post()),
        (
            Setting::FallbackUrl,
            &h.fallback_url,
            Some(intended.fallback_url),
        ),
        (Setting::FallbackMethod, &h.fallback_method, post()),
    ];
    // Calls only, and only when the wiring sets one (`""` leaves it alone).
    if channel == Channel::Voice {
        if let Some(url) = &w.status_callback {
            wanted.push((
                Setting::StatusCallback,
                &h.status_callback,
                Some(url.clone()),
            ));
            wanted.push((
                Setting::StatusCallbackMethod,
                &h.status_callback_method,
                post(),
            ));
        }
    }
    wanted
        .into_iter()
        .filter_map(|(setting, old, new)| {
            let new = new?;
            let method = matches!(
                setting,
                Setting::Method | Setting::FallbackMethod | Setting::StatusCallbackMethod
            );
            let same = match old {
                Some(o) if method => o.eq_ignore_ascii_case(&new),
                Some(o) => *o == new,
                None => false,
            };
            (!same).then(|| Difference {
                setting,
                old: old.clone(),
                new,
            })
        })
        .collect()
}

/// One problem, with the detail an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which check failed.
    pub kind: Kind,
    /// What was found.
    pub detail: String,
}

/// The verdict on one channel of one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAudit {
    /// Who handles it.
    pub source: Source,
    /// With what settings.
    pub handling: Handling,
    /// Empty when fine (a SIP trunk is never judged: it uses no webhook).
    pub problems: Vec<Problem>,
}

/// The verdict on one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberAudit {
    /// `PN…`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Its friendly name.
    pub friendly_name: Option<String>,
    /// Calls.
    pub voice: ChannelAudit,
    /// Messages.
    pub sms: ChannelAudit,
}

impl NumberAudit {
    /// True when neither channel has a problem.
    pub fn ok(&self) -> bool {
        self.voice.problems.is_empty() && self.sms.problems.is_empty()
    }
}

/// True when `url` is `base` or below it (`base/…`, `base?…`).
pub fn on_base(url: &str, base: &str) -> bool {
    url == base
        || url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with(['/', '?']))
}

fn host(url: &str) -> Option<String> {
    Target::parse(split_fragment(url).0)
        .ok()
        .map(|t| t.host.to_ascii_lowercase())
}

fn is_post(method: &Option<String>) -> bool {
    // Twilio's default method is POST when none is set.
    method
        .as_deref()
        .is_none_or(|m| m.eq_ignore_ascii_case("POST"))
}

/// Judges one channel's settings against the wiring: each check, then every other difference
/// from the wiring file, so a channel passes only when `plan` would leave it alone.
pub fn judge(channel: Channel, h: &Handling, w: &Wiring) -> Vec<Problem> {
    let mut out = checks(channel, h, w);
    let explained: Vec<Setting> = out.iter().filter_map(|p| p.kind.setting()).collect();
    for d in differences(channel, h, w) {
        if explained.contains(&d.setting) {
            continue;
        }
        out.push(Problem {
            kind: Kind::DiffersFromWiring,
            detail: format!(
                "{} is {}, the wiring file wants {} (`numbers plan` rewrites it)",
                setting_name(d.setting),
                d.old.as_deref().unwrap_or("unset"),
                d.new
            ),
        });
    }
    out
}

/// A setting as a problem's detail names it, whatever resource holds it.
fn setting_name(setting: Setting) -> &'static str {
    match setting {
        Setting::Url => "primary",
        Setting::Method => "primary method",
        Setting::FallbackUrl => "fallback",
        Setting::FallbackMethod => "fallback method",
        Setting::StatusCallback => "status callback",
        Setting::StatusCallbackMethod => "status callback method",
    }
}

/// The checks that say what a wrong setting would break.
// Long on purpose: one check per wrong setting, each with what it would break.
fn checks(channel: Channel, h: &Handling, w: &Wiring) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |kind, detail: String| out.push(Problem { kind, detail });
    match &h.url {
        None => push(Kind::NoPrimaryUrl, "no primary URL".into()),
        Some(url) => {
            let (bare, fragment) = split_fragment(url);
            if !on_base(bare, &w.primary_base) {
                push(
                    Kind::PrimaryNotOnBase,
                    format!("primary {bare} is not on {}", w.primary_base),
                );
            }
            match fragment.filter(|f| !f.is_empty()) {
                None => push(
                    Kind::NoOverrides,
                    format!("primary {bare} has no #ct=… connection overrides"),
                ),
                Some(f) => match check_overrides(f) {
                    Err(warnings) => {
                        push(Kind::BadOverrides, format!("#{f}: {}", warnings.join("; ")))
                    }
                    Ok(o) if channel == Channel::Voice && o.left_for_fallback() < w.min_fallback => {
                        push(
                            Kind::FallbackBudget,
                            format!(
                                "#{f} leaves the fallback {:.1} s of 15 s (at least {:.1} s wanted)",
                                o.left_for_fallback().as_secs_f64(),
                                w.min_fallback.as_secs_f64()
                            ),
                        )
                    }
                    Ok(_) => {}
                },
            }
        }
    }
    if !is_post(&h.method) {
        push(
            Kind::PrimaryMethod,
            format!("primary method {}", h.method.as_deref().unwrap_or("")),
        );
    }
    match &h.fallback_url {
        None => push(Kind::NoFallbackUrl, "no fallback URL".into()),
        Some(url) => {
            let bare = split_fragment(url).0;
            let primary_host = h.url.as_deref().and_then(host);
            if primary_host.is_some() && host(bare) == primary_host {
                push(
                    Kind::FallbackSameHost,
                    format!("fallback {bare} is on the primary's host"),
                );
            } else if !on_base(bare, &w.fallback_base) {
                push(
                    Kind::FallbackNotOnBase,
                    format!("fallback {bare} is not on {}", w.fallback_base),
                );
            }
        }
    }
    if !is_post(&h.fallback_method) {
        push(
            Kind::FallbackMethod,
            format!(
                "fallback method {}",
                h.fallback_method.as_deref().unwrap_or("")
            ),
        );
    }
    if channel == Channel::Voice {
        if let Some(want) = &w.status_callback {
            if h.status_callback.as_deref() != Some(want.as_str()) {
                push(
                    Kind::StatusCallback,
                    format!(
                        "status callback {} (want {want})",
                        h.status_callback.as_deref().unwrap_or("unset")
                    ),
                );
            }
        }
    }
    out
}

fn channel_audit(account: &Account, n: &Number, channel: Channel, w: &Wiring) -> ChannelAudit {
    let (source, handling) = effective(account, n, channel);
    let problems = match source {
        Source::Trunk(_) => Vec::new(),
        _ => judge(channel, &handling, w),
    };
    ChannelAudit {
        source,
        handling,
        problems,
    }
}

/// Audits every number `selected` keeps, in the account's order.
pub fn audit(
    account: &Account,
    w: &Wiring,
    selected: impl Fn(&Number) -> bool,
) -> Vec<NumberAudit> {
    account
        .numbers
        .iter()
        .filter(|n| selected(n))
        .map(|n| NumberAudit {
            sid: n.sid.clone(),
            phone_number: n.phone_number.clone(),
            friendly_name: owned(&n.friendly_name),
            voice: channel_audit(account, n, Channel::Voice, w),
            sms: channel_audit(account, n, Channel::Sms, w),
        })
        .collect()
}

/// `312 numbers: 309 ok, 2 without a fallback URL, 1 messaging handled by Service MG… without a
/// fallback URL`: each failing number counted once, under its first problem.
pub fn summary(audits: &[NumberAudit]) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    let mut ok = 0;
    for a in audits {
        let first = [(Channel::Voice, &a.voice), (Channel::Sms, &a.sms)]
            .into_iter()
            .find_map(|(ch, c)| c.problems.first().map(|p| (ch, &c.source, p.kind)));
        let Some((channel, source, kind)) = first else {
            ok += 1;
            continue;
        };
        let label = match source {
            Source::Number => kind.summary().to_string(),
            other => format!(
                "{} handled by {} {}",
                match channel {
                    Channel::Voice => "voice",
                    Channel::Sms => "messaging",
                },
                other.label(),
                kind.summary()
            ),
        };
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => groups.push((label, 1)),
        }
    }
    let mut out = format!(
        "{} number{}: {ok} ok",
        audits.len(),
        if audits.len() == 1 { "" } else { "s" }
    );
    for (label, n) in groups {
        out.push_str(&format!(", {n} {label}"));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::numbers::model::{Application, Service};

    pub(crate) fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    /// A number wired as [`Wiring::example`] wants.
    pub(crate) fn good(sid: &str) -> Number {
        Number {
            sid: sid.into(),
            phone_number: "+15550001111".into(),
            voice_url: s("https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"),
            voice_method: s("POST"),
            voice_fallback_url: s("https://fallback.example.net/voice"),
            voice_fallback_method: s("POST"),
            sms_url: s("https://voice.example.com/sms#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"),
            sms_method: s("POST"),
            sms_fallback_url: s("https://fallback.example.net/sms"),
            sms_fallback_method: s("POST"),
            status_callback: s("https://voice.example.com/status"),
            status_callback_method: s("POST"),
            ..Number::default()
        }
    }

    #[test]
    fn each_kind_is_named_as_json_names_it() {
        for kind in Kind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }

    fn kinds(c: &ChannelAudit) -> Vec<Kind> {
        c.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_well_wired_number_passes() {
        let account = Account {
            numbers: vec![good("PN1")],
            ..Account::default()
        };
        let a = audit(&account, &Wiring::example(), |_| true);
        assert!(a[0].ok(), "{a:?}");
        assert_eq!(summary(&a), "1 number: 1 ok");
    }

    #[test]
    fn each_check_reports_its_kind() {
        let mut n = good("PN1");
        n.voice_fallback_url = None;
        n.voice_method = s("GET");
        n.sms_url = s("https://voice.example.com/sms");
        n.sms_fallback_url = s("https://voice.example.com/fallback/sms");
        n.status_callback = None;
        let w = Wiring::example();
        let account = Account {
            numbers: vec![n],
            ..Account::default()
        };
        let a = &audit(&account, &w, |_| true)[0];
        assert_eq!(
            kinds(&a.voice),
            [
                Kind::PrimaryMethod,
                Kind::NoFallbackUrl,
                Kind::StatusCallback
            ]
        );
        assert_eq!(kinds(&a.sms), [Kind::NoOverrides, Kind::FallbackSameHost]);
        let mut h = effective(&account, &account.numbers[0], Channel::Voice).1;
        h.url = s("https://voice.example.com/voice#rt=15000");
        h.fallback_url = s("https://elsewhere.example.org/voice");
        assert_eq!(
            judge(Channel::Voice, &h, &w)
                .iter()
                .map(|p| p.kind)
                .collect::<Vec<_>>(),
            [
                Kind::FallbackBudget,
                Kind::PrimaryMethod,
                Kind::FallbackNotOnBase,
                Kind::StatusCallback
            ]
        );
        h.url = s("https://other.example.com/voice#ct=1&zz=2");
        let k: Vec<_> = judge(Channel::Sms, &h, &w).iter().map(|p| p.kind).collect();
        assert_eq!(k[..2], [Kind::PrimaryNotOnBase, Kind::BadOverrides]);
    }

    #[test]
    fn settings_the_wiring_file_does_not_want_fail_with_what_it_wants() {
        let w = Wiring::example();
        let mut n = good("PN1");
        n.voice_url = s("https://voice.example.com/voice#ct=1000&rt=3000&tt=6000&rc=1&rp=ct");
        n.sms_method = s("post");
        n.sms_url = s("https://voice.example.com/messages#ct=1000&rt=4000&tt=6000&rc=1&rp=ct");
        n.status_callback_method = None;
        let account = Account {
            numbers: vec![n],
            ..Account::default()
        };
        let a = &audit(&account, &w, |_| true)[0];
        assert!(!a.ok());
        assert_eq!(
            a.voice.problems,
            [
                Problem {
                    kind: Kind::DiffersFromWiring,
                    detail: "primary is https://voice.example.com/voice#ct=1000&rt=3000&tt=6000&rc=1&rp=ct, the wiring \
                             file wants https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct \
                             (`numbers plan` rewrites it)"
                        .into()
                },
                Problem {
                    kind: Kind::DiffersFromWiring,
                    detail: "status callback method is unset, the wiring file wants POST \
                             (`numbers plan` rewrites it)"
                        .into()
                }
            ]
        );
        // Another path on the right base, and a method in lower case (the same to Twilio).
        assert_eq!(kinds(&a.sms), [Kind::DiffersFromWiring]);
        assert!(a.sms.problems[0]
            .detail
            .starts_with("primary is https://voice.example.com/messages#"));
        assert_eq!(
            summary(std::slice::from_ref(a)),
            "1 number: 0 ok, 1 with settings that differ from the wiring file"
        );
    }

    #[test]
    fn service_app_and_trunk_take_over() {
        let mut n = good("PN1");
        n.voice_application_sid = s("AP1");
        n.sms_application_sid = s("AP1");
        let mut t = good("PN2");
        t.trunk_sid = s("TK1");
        t.voice_url = None;
        let mut d = good("PN3");
        d.sms_url = None;
        let mut account = Account {
            numbers: vec![n, t, d],
            ..Account::default()
        };
        account.applications.insert(
            "AP1".into(),
            Application {
                sid: "AP1".into(),
                voice_url: s("https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct"),
                voice_method: s("POST"),
                voice_fallback_method: s("POST"),
                status_callback_method: s("POST"),
                ..Application::default()
            },
        );
        account.services.insert(
            "MG1".into(),
            Service {
                sid: "MG1".into(),
                inbound_request_url: s("https://voice.example.com/sms#ct=1000"),
                inbound_method: s("POST"),
                fallback_method: s("POST"),
                ..Service::default()
            },
        );
        account.service_of.insert("PN1".into(), "MG1".into());
        let w = Wiring::example();
        let a = audit(&account, &w, |_| true);
        assert_eq!(a[0].voice.source, Source::Application("AP1".into()));
        assert_eq!(
            kinds(&a[0].voice),
            [Kind::NoFallbackUrl, Kind::StatusCallback]
        );
        assert_eq!(a[0].sms.source, Source::Service("MG1".into()));
        // Valid overrides, but not the wiring file's: plan would rewrite them, so audit says so.
        assert_eq!(
            kinds(&a[0].sms),
            [Kind::NoFallbackUrl, Kind::DiffersFromWiring]
        );
        assert_eq!(a[1].voice.source, Source::Trunk("TK1".into()));
        assert!(a[1].ok());
        assert_eq!(a[2].sms.source, Source::Number);
        assert_eq!(kinds(&a[2].sms), [Kind::NoPrimaryUrl]);
        assert_eq!(
            summary(&a),
            "3 numbers: 1 ok, 1 voice handled by App AP1 without a fallback URL, 1 without a primary URL"
        );
        // A Service that defers to the number: the number's own URLs count again.
        account
            .services
            .get_mut("MG1")
            .unwrap()
            .use_inbound_webhook_on_number = Some(true);
        let a = audit(&account, &w, |_| true);
        assert_eq!(a[0].sms.source, Source::Application("AP1".into()));
        account.numbers[0].sms_application_sid = None;
        let a = audit(&account, &w, |_| true);
        assert_eq!(a[0].sms.source, Source::Number);
        assert!(a[0].sms.problems.is_empty());
    }
}
