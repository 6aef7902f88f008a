//! The failover drill: plays Twilio against a number's primary and fallback URLs (incoming call,
//! incoming SMS, one step of a menu) and reports who answered, why, how fast, and with what TwiML.
//!
//! [`run`] drives the scenarios; [`twilio`] fetches like Twilio (over [`crate::net`], with the URL
//! fragment's [`crate::twilio::overrides`]; [`crate::net::url`] resolves relative links), [`fault`]
//! the simulated failing primary, [`report`] the text and JSON output.

pub mod fault;
pub mod report;
pub mod twilio;

use std::future::Future;
use std::time::{Duration, Instant};

use quick_xml::events::Event;
use serde::Serialize;

use crate::net::url::{self, Target};
use crate::twilio::document;
use crate::twilio::overrides;
use crate::twilio::Channel;
pub use fault::Fault;
pub use report::{Report, ScenarioReport, Side, Verdict};
use twilio::{Fetch, Method, Request};

/// One rehearsed interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// An incoming call to the voice URL.
    Voice,
    /// An incoming SMS to the messaging URL.
    Sms,
    /// An incoming call, then the caller presses digits: follows the answer's `<Gather>` action.
    Gather,
    /// An incoming call, then follows the answer's `<Redirect>`.
    Redirect,
}

impl Scenario {
    /// The scenario's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Voice => "voice",
            Scenario::Sms => "sms",
            Scenario::Gather => "gather",
            Scenario::Redirect => "redirect",
        }
    }

    fn channel(self) -> Channel {
        match self {
            Scenario::Sms => Channel::Messaging,
            _ => Channel::Voice,
        }
    }
}

/// What the drill needs; the CLI fills it from flags and the environment.
#[derive(Debug, Clone)]
pub struct Options {
    /// The number's voice URL ("A call comes in"), connection overrides in its fragment.
    pub primary: Option<String>,
    /// The voice "Primary handler fails" URL.
    pub fallback: Option<String>,
    /// The messaging URL; default: the voice URL with its last segment `voice` replaced by `sms`.
    pub sms_primary: Option<String>,
    /// The messaging fallback URL; derived from `fallback` the same way.
    pub sms_fallback: Option<String>,
    /// The auth token that signs every request.
    pub token: String,
    /// What to rehearse, in order.
    pub scenarios: Vec<Scenario>,
    /// Replace the primary's host with a local server that fails this way.
    pub simulate: Option<Fault>,
    /// Digits sent to a `<Gather>` action.
    pub digits: String,
    /// Caller (`From`).
    pub from: String,
    /// The number called (`To`).
    pub to: String,
    /// SMS text (`Body`).
    pub body: String,
    /// `AccountSid` sent (it picks the token on receivers with subaccounts).
    pub account_sid: String,
    /// Print "waiting for primary…" lines on stderr while a request is pending.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            primary: None,
            fallback: None,
            sms_primary: None,
            sms_fallback: None,
            token: String::new(),
            scenarios: vec![Scenario::Voice, Scenario::Sms],
            simulate: None,
            digits: "1".into(),
            from: "+15550100100".into(),
            to: "+15550100199".into(),
            body: "Failover drill".into(),
            account_sid: format!("AC{}", "0".repeat(32)),
            progress: false,
        }
    }
}

/// The primary and fallback URLs of one channel, fragments kept.
#[derive(Debug, Clone)]
struct Urls {
    primary: String,
    fallback: Option<String>,
}

/// Replaces a last path segment `voice` with `sms`, keeping query and fragment.
fn sms_twin(voice_url: &str) -> Option<String> {
    let (rest, fragment) = overrides::split_fragment(voice_url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let stem = path.strip_suffix("/voice")?;
    let mut out = format!("{stem}/sms");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// Points `url`'s path, query and fragment at the fault server.
fn on_fault_server(url: &str, addr: std::net::SocketAddr) -> Result<String, String> {
    let (base, fragment) = overrides::split_fragment(url);
    let target = Target::parse(base)?;
    let mut out = format!("http://{addr}{}", target.path_and_query);
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Ok(out)
}

fn check_url(what: &str, url: &str) -> Result<(), String> {
    Target::parse(overrides::split_fragment(url).0)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// Runs every scenario in `opts` and reports on each. An `Err` is a usage problem (a bad URL, a
/// missing one), never a failed drill: that is a [`Verdict::Fail`] in the report.
pub async fn run(opts: &Options) -> Result<Report, String> {
    if opts.token.is_empty() {
        return Err("token: empty; set --token or TWILIO_AUTH_TOKEN".into());
    }
    if opts.scenarios.is_empty() {
        return Err("scenario: none given".into());
    }
    // Held for the whole drill; dropping it stops the fault server.
    let fault_server = match opts.simulate {
        Some(f) => Some(
            fault::start(f)
                .await
                .map_err(|e| format!("simulate-primary-failure: cannot start: {e}"))?,
        ),
        None => None,
    };
    let mut voice_primary = opts.primary.clone();
    let mut sms_primary = opts
        .sms_primary
        .clone()
        .or_else(|| opts.primary.as_deref().and_then(sms_twin));
    if let Some(server) = &fault_server {
        let base = voice_primary.unwrap_or_else(|| "http://127.0.0.1/voice".into());
        sms_primary = Some(on_fault_server(
            sms_primary.as_deref().unwrap_or("http://127.0.0.1/sms"),
            server.addr,
        )?);
        voice_primary = Some(on_fault_server(&base, server.addr)?);
    }
    let sms_fallback = opts
        .sms_fallback
        .clone()
        .or_else(|| opts.fallback.as_deref().and_then(sms_twin));
    let voice = voice_primary.map(|primary| Urls {
        primary,
        fallback: opts.fallback.clone(),
    });
    let sms = sms_primary.map(|primary| Urls {
        primary,
        fallback: sms_fallback,
    });
    for (what, urls) in [("voice", &voice), ("sms", &sms)] {
        if let Some(u) = urls {
            check_url(&format!("{what} primary URL"), &u.primary)?;
            if let Some(f) = &u.fallback {
                check_url(&format!("{what} fallback URL"), f)?;
            }
        }
    }

    let mut report = Report {
        simulated_primary_failure: opts.simulate,
        scenarios: Vec::new(),
    };
    for &scenario in &opts.scenarios {
        let urls = match scenario.channel() {
            Channel::Voice => voice.as_ref().ok_or(
                "voice scenarios need --primary (or --simulate-primary-failure)".to_string(),
            )?,
            Channel::Messaging => sms.as_ref().ok_or(
                "the sms scenario needs --sms-primary, or a --primary URL ending in /voice"
                    .to_string(),
            )?,
        };
        report
            .scenarios
            .push(run_scenario(scenario, urls, opts).await);
    }
    drop(fault_server);
    Ok(report)
}

/// A realistic, unique id of Twilio's shape (`CA` + 32 hex digits).
fn sid(prefix: &str) -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{:?}-{}",
        std::process::id(),
        std::time::SystemTime::now(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let digest = sha2::Sha256::digest(seed.as_bytes());
    format!("{prefix}{}", &hex::encode(digest)[..32])
}

fn params(channel: Channel, opts: &Options) -> Vec<(String, String)> {
    let mut p: Vec<(&str, String)> = vec![
        ("AccountSid", opts.account_sid.clone()),
        ("ApiVersion", "2010-04-01".into()),
        ("From", opts.from.clone()),
        ("To", opts.to.clone()),
        ("FromCountry", "US".into()),
        ("ToCountry", "US".into()),
    ];
    match channel {
        Channel::Voice => p.extend([
            ("CallSid", sid("CA")),
            ("CallStatus", "ringing".into()),
            ("Direction", "inbound".into()),
            ("Caller", opts.from.clone()),
            ("Called", opts.to.clone()),
        ]),
        Channel::Messaging => {
            let sid = sid("SM");
            p.extend([
                ("MessageSid", sid.clone()),
                ("SmsSid", sid.clone()),
                ("SmsMessageSid", sid),
                ("SmsStatus", "received".into()),
                ("Body", opts.body.clone()),
                ("NumMedia", "0".into()),
                ("NumSegments", "1".into()),
            ]);
        }
    }
    p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Awaits `fetch`, printing a line on stderr every second while it is pending (when asked).
async fn with_progress(
    fetch: impl Future<Output = Fetch>,
    label: &str,
    budget: Duration,
    on: bool,
) -> Fetch {
    if !on {
        return fetch.await;
    }
    tokio::pin!(fetch);
    let start = tokio::time::Instant::now();
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(start + second, second);
    loop {
        tokio::select! {
            done = &mut fetch => return done,
            _ = tick.tick() => eprintln!(
                "waiting for {label}… {:.1} s of {:.1} s",
                start.elapsed().as_secs_f64(),
                budget.as_secs_f64()
            ),
        }
    }
}

async fn fetch_url(
    url: &str,
    method: Method,
    params: Vec<(String, String)>,
    channel: Channel,
    label: &str,
    opts: &Options,
    warnings: &mut Vec<String>,
) -> Result<Fetch, String> {
    let (base, fragment) = overrides::split_fragment(url);
    let (o, w) = overrides::parse(fragment);
    warnings.extend(w.into_iter().map(|w| format!("{label} URL: {w}")));
    let request = Request {
        target: Target::parse(base)?,
        method,
        params,
        token: opts.token.clone(),
        channel,
    };
    let budget = o.budget(channel == Channel::Voice);
    Ok(with_progress(twilio::fetch(&request, &o), label, budget, opts.progress).await)
}

/// A top-level verb of a TwiML document, with what a transfer of control needs.
#[derive(Debug, Clone, Default)]
struct Verb {
    name: String,
    action: Option<String>,
    method: Option<String>,
    text: String,
}

/// The verbs directly under `<Response>`, in order. The document is already known to parse.
fn verbs(doc: &str) -> Vec<Verb> {
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut out: Vec<Verb> = Vec::new();
    let mut depth = 0usize;
    loop {
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(e) => e,
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 1 {
                    let mut verb = Verb {
                        name: e.name().as_ref().to_string(),
                        ..Verb::default()
                    };
                    for attr in e.attributes().flatten() {
                        let value = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map(|v| v.into_owned())
                            .unwrap_or_default();
                        match attr.key.as_ref() {
                            "action" => verb.action = Some(value),
                            "method" => verb.method = Some(value),
                            _ => {}
                        }
                    }
                    out.push(verb);
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(ref t) if depth == 2 => {
                if let Some(v) = out.last_mut() {
                    v.text
                        .push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0));
                }
            }
            Event::GeneralRef(ref r) if depth == 2 => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    match r.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    }
                };
                if let (Some(v), Some(c)) = (out.last_mut(), c) {
                    v.text.push(c);
                }
            }
            _ => {}
        }
    }
    out
}

async fn run_scenario(scenario: Scenario, urls: &Urls, opts: &Options) -> ScenarioReport {
    let channel = scenario.channel();
    let params = params(channel, opts);
    let mut warnings = Vec::new();
    let start = Instant::now();
    let primary = match fetch_url(
        &urls.primary,
        Method::Post,
        params.clone(),
        channel,
        "primary",
        opts,
        &mut warnings,
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return ScenarioReport::unusable(scenario, e),
    };
    let mut fallback = None;
    if let (Some(failure), Some(url)) = (&primary.failure, &urls.fallback) {
        let mut p = params.clone();
        p.push(("ErrorCode".into(), failure.code.to_string()));
        p.push(("ErrorUrl".into(), primary.url.clone()));
        match fetch_url(
            url,
            Method::Post,
            p,
            channel,
            "fallback",
            opts,
            &mut warnings,
        )
        .await
        {
            Ok(f) => fallback = Some(f),
            Err(e) => return ScenarioReport::unusable(scenario, e),
        }
    }
    let time_to_answer = start.elapsed();
    let answered = if primary.twiml.is_some() {
        Some((Side::Primary, &primary))
    } else {
        fallback
            .as_ref()
            .filter(|f| f.twiml.is_some())
            .map(|f| (Side::Fallback, f))
    };
    let mut r = ScenarioReport::new(scenario, channel);
    r.time_to_answer_ms = u64::try_from(time_to_answer.as_millis()).unwrap_or(u64::MAX);
    r.abandoned_because = primary.failure.clone();
    if let Some((side, fetch)) = answered {
        let doc = fetch.twiml.as_deref().unwrap_or_default();
        r.answered_by = Some(side);
        r.verbs = verbs(doc).into_iter().map(|v| v.name).collect();
        r.twiml_problems = schema_problems(doc, channel);
        if r.twiml_problems.is_empty() {
            if let Some(verb) = match scenario {
                Scenario::Gather => Some("Gather"),
                Scenario::Redirect => Some("Redirect"),
                _ => None,
            } {
                r.follow = Some(follow(verb, &fetch.url, doc, &params, opts, &mut warnings).await);
            }
        }
    }
    r.primary = Some(primary);
    r.fallback = fallback;
    r.no_fallback_url = urls.fallback.is_none();
    r.warnings = warnings;
    r.judge();
    r
}

fn schema_problems(doc: &str, channel: Channel) -> Vec<String> {
    document::check(doc, Some(channel))
        .problems
        .into_iter()
        .map(|p| format!("byte {}: {}", p.offset, p.message))
        .collect()
}

/// Takes the one step Twilio takes next: POST (or GET) to the `<Gather>` action with `Digits`, or
/// to the `<Redirect>` target, resolved against the answering document's URL.
async fn follow(
    verb_name: &str,
    doc_url: &str,
    doc: &str,
    params: &[(String, String)],
    opts: &Options,
    warnings: &mut Vec<String>,
) -> report::Follow {
    let mut f = report::Follow {
        verb: verb_name.to_string(),
        ..report::Follow::default()
    };
    let Some(verb) = verbs(doc).into_iter().find(|v| v.name == verb_name) else {
        f.skipped = Some(format!("the answer has no <{verb_name}> to follow"));
        return f;
    };
    // <Gather> without action posts back to the document itself; <Redirect> names its target.
    let reference = match verb_name {
        "Gather" => verb.action.clone().unwrap_or_default(),
        _ => verb.text.trim().to_string(),
    };
    let url = url::resolve(doc_url, &reference);
    f.url = Some(overrides::split_fragment(&url).0.to_string());
    let (Ok(from), Ok(to)) = (
        Target::parse(doc_url),
        Target::parse(overrides::split_fragment(&url).0),
    ) else {
        f.skipped = Some(format!("{reference:?} does not resolve to an http(s) URL"));
        return f;
    };
    if !from.same_origin(&to) {
        f.skipped = Some(format!(
            "{url} is on another host than the one that answered; the drill stays on {}",
            from.authority
        ));
        return f;
    }
    let method = match verb
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("GET") => Method::Get,
        _ => Method::Post,
    };
    f.method = Some(method);
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let v = if k == "CallStatus" { "in-progress" } else { v };
            (k.clone(), v.to_string())
        })
        .collect();
    if verb_name == "Gather" {
        p.push(("Digits".into(), opts.digits.clone()));
        f.digits = Some(opts.digits.clone());
    }
    let fetch = match fetch_url(&url, method, p, Channel::Voice, "next step", opts, warnings).await
    {
        Ok(fetch) => fetch,
        Err(e) => {
            f.skipped = Some(e);
            return f;
        }
    };
    if let Some(doc) = fetch.twiml.as_deref() {
        f.verbs = verbs(doc).into_iter().map(|v| v.name).collect();
        f.twiml_problems = schema_problems(doc, Channel::Voice);
    }
    f.fetch = Some(fetch);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_urls_derive_from_voice_urls() {
        assert_eq!(
            sms_twin("https://v.example.com/voice?x=1#ct=1000").as_deref(),
            Some("https://v.example.com/sms?x=1#ct=1000")
        );
        assert_eq!(sms_twin("https://v.example.com/ivr"), None);
    }

    #[test]
    fn fault_server_keeps_path_and_overrides() {
        let addr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            on_fault_server("https://v.example.com/voice?a=1#rt=1000", addr).unwrap(),
            "http://127.0.0.1:4000/voice?a=1#rt=1000"
        );
    }

    #[test]
    fn verbs_and_transfer_targets() {
        let doc = r#"<?xml version="1.0"?><Response><Gather action="menu?a=1&amp;b=2" method="GET"><Say>x</Say></Gather><Say>y</Say><Redirect method="POST">voice?a=1&amp;b=2</Redirect></Response>"#;
        let v = verbs(doc);
        let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["Gather", "Say", "Redirect"]);
        assert_eq!(v[0].action.as_deref(), Some("menu?a=1&b=2"));
        assert_eq!(v[0].method.as_deref(), Some("GET"));
        assert_eq!(v[2].text, "voice?a=1&b=2");
    }

    #[test]
    fn params_look_like_twilio() {
        let opts = Options::default();
        let call = params(Channel::Voice, &opts);
        let get = |p: &[(String, String)], k: &str| {
            p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let call_sid = get(&call, "CallSid").unwrap();
        assert!(
            call_sid.starts_with("CA") && call_sid.len() == 34,
            "{call_sid}"
        );
        assert_eq!(get(&call, "AccountSid").unwrap().len(), 34);
        assert_eq!(get(&call, "Direction").as_deref(), Some("inbound"));
        let sms = params(Channel::Messaging, &opts);
        assert_eq!(get(&sms, "Body").as_deref(), Some("Failover drill"));
        assert!(get(&sms, "MessageSid").unwrap().starts_with("SM"));
        assert_ne!(
            get(&params(Channel::Voice, &opts), "CallSid").unwrap(),
            call_sid
        );
    }
}
