//! One probe of one URL Twilio would call, made as Twilio would make the request: the name
//! resolves, a connection opens and the TLS handshake completes within the URL's connect timeout
//! (the certificate it presented is kept, even a refused one, for its expiry); then, for a URL
//! served by twiml-failover, a webhook signed with the account's token and marked as a probe
//! ([`crate::twilio::PROBE_PARAM`]), fetched with the drill's rules (read and total timeouts,
//! retries, Twilio's ErrorCodes), whose answer must be valid TwiML for the channel. Other apps'
//! URLs get the connection and certificate checks only. I/O.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::drill::twilio::{self as fetcher, Failure, Method, Request};
use crate::drill::{self, Options};
use crate::net;
use crate::net::url::Target;
use crate::numbers::wiring;
use crate::twilio::overrides::{self, split_fragment, Overrides};
use crate::twilio::{Channel, Role, PROBE_PARAM};

/// One URL Twilio would call: as configured (fragment included), for which channel and role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UrlKey {
    /// The URL as set in Twilio, `#ct=…` fragment included.
    pub url: String,
    /// Calls or messages.
    pub channel: wiring::Channel,
    /// The number's primary URL or its "Primary handler fails" URL.
    pub role: Role,
}

/// A URL to probe and how.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Which URL.
    pub key: UrlKey,
    /// Send a signed webhook (served by twiml-failover, or opted in); else reachability only.
    pub signed: bool,
    /// For a fallback URL: a primary URL that falls back to it (`ErrorUrl`).
    pub error_url: Option<String>,
    /// A number that uses it (`To`).
    pub to: String,
}

/// What a probe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// A signed webhook, its answer judged.
    Webhook,
    /// DNS, connect and TLS only.
    Reachability,
}

impl Check {
    /// `webhook` or `reachability`.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Webhook => "webhook",
            Check::Reachability => "reachability",
        }
    }
}

/// The certificate a server presented.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// `host:port`.
    pub host: String,
    /// The leaf's `notAfter`; `None` when it could not be read.
    pub not_after: Option<SystemTime>,
    /// Why the chain was refused; `None` when it was valid for the host.
    pub refused: Option<String>,
}

/// How one probe went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was done.
    pub check: Check,
    /// Why Twilio would fail on this URL; `None` when it passed.
    pub failure: Option<Failure>,
    /// From the start of the last attempt to the answer's head (webhooks only).
    pub first_byte: Option<Duration>,
    /// The whole probe, retries included (reachability: the handshake).
    pub total: Duration,
    /// What Twilio allows before the first byte (`#rt=`).
    pub read_timeout: Duration,
    /// What Twilio allows for all attempts (`#tt=`, voice capped at 15 s).
    pub total_timeout: Duration,
    /// What an `https://` server presented, if the handshake got that far.
    pub certificate: Option<Certificate>,
    /// Why a URL twiml-failover serves got reachability checks only.
    pub note: Option<String>,
}

impl Outcome {
    /// True when Twilio would get TwiML it executes (or, for reachability, a connection).
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Makes probes; shared by the round's probe tasks.
#[derive(Debug)]
pub struct Prober {
    roots: Arc<rustls::RootCertStore>,
    token: Option<String>,
    account_sid: String,
}

/// The text of a probe SMS: what an app that is probed by mistake would see.
const PROBE_BODY: &str = "twiml-failover monitor probe";

fn twilio_channel(channel: wiring::Channel) -> Channel {
    match channel {
        wiring::Channel::Voice => Channel::Voice,
        wiring::Channel::Sms => Channel::Messaging,
    }
}

/// A failure found by the probe itself rather than by the fetch: no HTTP status.
fn failed(code: u16, detail: String) -> Failure {
    Failure {
        code,
        detail,
        http_status: None,
    }
}

/// The signed webhook of a probe: fetched with the drill's rules, then its answer judged as
/// TwiML for the channel. Sets the check, the time to the first byte and the failure in `out`.
async fn webhook(req: &Request, o: &Overrides, tls: &rustls::ClientConfig, out: &mut Outcome) {
    out.check = Check::Webhook;
    let fetch = fetcher::fetch_with(req, o, tls).await;
    out.first_byte = fetch
        .attempts
        .last()
        .and_then(|a| a.first_byte_ms)
        .map(Duration::from_millis);
    out.failure = fetch
        .failure
        .or_else(|| schema_failure(fetch.twiml.as_deref().unwrap_or_default(), req.channel));
}

/// Twilio's 12200 for an answer that is not valid TwiML for the channel; `None` when it is.
fn schema_failure(doc: &str, channel: Channel) -> Option<Failure> {
    let problems = drill::schema_problems(doc, channel);
    (!problems.is_empty()).then(|| {
        failed(
            12200,
            format!(
                "TwiML not valid for {}: {}",
                channel.as_str(),
                problems.join("; ")
            ),
        )
    })
}

impl Prober {
    /// Probes trusting `roots`, signing with `token` (none: reachability only), as `account_sid`.
    pub fn new(
        roots: Arc<rustls::RootCertStore>,
        token: Option<String>,
        account_sid: String,
    ) -> Prober {
        Prober {
            roots,
            token,
            account_sid,
        }
    }

    /// Probes one URL.
    pub async fn probe(&self, p: &Probe) -> Outcome {
        let channel = twilio_channel(p.key.channel);
        let (bare, fragment) = split_fragment(&p.key.url);
        let (o, _) = overrides::parse(fragment);
        let mut out = Outcome {
            check: Check::Reachability,
            failure: None,
            first_byte: None,
            total: Duration::ZERO,
            read_timeout: o.read_timeout,
            total_timeout: o.budget(channel == Channel::Voice),
            certificate: None,
            note: None,
        };
        let target = match Target::parse(bare) {
            Ok(t) => t,
            Err(e) => {
                out.failure = Some(failed(11100, format!("invalid URL: {e}")));
                return out;
            }
        };
        let (tls, seen) = match net::tls::inspecting(self.roots.clone()) {
            Ok(pair) => pair,
            Err(e) => {
                out.failure = Some(failed(11220, format!("no TLS settings: {e}")));
                return out;
            }
        };
        let started = std::time::Instant::now();
        match (&self.token, p.signed) {
            (Some(token), true) => {
                let req = Request {
                    target: target.clone(),
                    method: Method::Post,
                    params: self.params(p, channel, bare),
                    token: token.clone(),
                    channel,
                };
                webhook(&req, &o, &tls, &mut out).await;
            }
            (token, signed) => {
                if signed && token.is_none() {
                    out.note = Some(
                        "no auth token (TWILIO_AUTH_TOKEN or --auth-token-file): reachability only"
                            .into(),
                    );
                }
                if let Err(e) = net::handshake(&target.url, o.connect_timeout, &tls).await {
                    out.failure = Some(fetcher::failure_of(e, channel, &o));
                }
            }
        }
        out.total = started.elapsed();
        if target.tls {
            out.certificate = seen.presented().map(|presented| Certificate {
                host: format!("{}:{}", target.host, target.port),
                not_after: not_after(&presented.leaf),
                refused: presented.refused.map(|e| e.to_string()),
            });
        }
        out
    }

    /// What Twilio sends for the channel, the probe marker inside the signed parameters, and for
    /// a fallback URL the `ErrorCode` and `ErrorUrl` Twilio adds.
    fn params(&self, p: &Probe, channel: Channel, bare: &str) -> Vec<(String, String)> {
        let opts = Options {
            to: p.to.clone(),
            body: PROBE_BODY.into(),
            account_sid: self.account_sid.clone(),
            ..Options::default()
        };
        let mut params = drill::params(channel, &opts);
        params.push((PROBE_PARAM.into(), "1".into()));
        if p.key.role == Role::Fallback {
            let error_url = p.error_url.as_deref().unwrap_or(bare);
            params.push(("ErrorCode".into(), "11205".into()));
            params.push(("ErrorUrl".into(), split_fragment(error_url).0.into()));
        }
        params
    }
}

/// A DER certificate's `notAfter`.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.validity.not_after.to_system_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_expiry_is_read() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let at = not_after(cert.der()).unwrap();
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        // 2031-05-17T00:00:00Z.
        assert_eq!(secs, 1_936_742_400);
        assert_eq!(not_after(b"not a certificate"), None);
    }

    #[test]
    fn a_fallback_probe_is_marked_and_says_why_twilio_came() {
        let prober = Prober::new(
            Arc::new(rustls::RootCertStore::empty()),
            Some("t".into()),
            "AC1".into(),
        );
        let probe = Probe {
            key: UrlKey {
                url: "https://fb.example/voice".into(),
                channel: wiring::Channel::Voice,
                role: Role::Fallback,
            },
            signed: true,
            error_url: Some("https://p.example/voice#ct=1000".into()),
            to: "+15550001111".into(),
        };
        let params = prober.params(&probe, Channel::Voice, "https://fb.example/voice");
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get(PROBE_PARAM), Some("1"));
        assert_eq!(get("ErrorCode"), Some("11205"));
        assert_eq!(get("ErrorUrl"), Some("https://p.example/voice"));
        assert_eq!(get("To"), Some("+15550001111"));
        assert_eq!(get("AccountSid"), Some("AC1"));
        assert!(get("CallSid").is_some_and(|s| s.starts_with("CA")));
        let primary = Probe {
            key: UrlKey {
                role: Role::Primary,
                ..probe.key.clone()
            },
            ..probe
        };
        let params = prober.params(&primary, Channel::Voice, "https://p.example/voice");
        assert!(!params.iter().any(|(n, _)| n == "ErrorCode"));
    }
}
