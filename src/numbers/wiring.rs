//! The intended wiring: a TOML file naming the primary and fallback bases, the paths, the
//! connection overrides for the primary URLs and the status callback. Parsed and checked here
//! (unknown keys refused, every error names its key); pure.

use std::time::Duration;

use serde::Deserialize;

use crate::net::url::Target;
use crate::twilio::overrides::{self, Overrides};

/// The overrides written when the file names none: at most 6 s on a dead or hung primary, so
/// the fallback keeps 9 s of the 15 s voice limit. `ct=1000`: a healthy connect takes well under
/// 300 ms; `rc=1&rp=ct`: one more attempt only when connecting or TLS failed (a new connection may
/// reach another ingress node); `rt=4000`: the server answers in milliseconds, 4 s survives a lost
/// packet; `tt=6000`: all attempts together.
pub const DEFAULT_OVERRIDES: &str = "ct=1000&rt=4000&tt=6000&rc=1&rp=ct";

/// The least the primary's overrides must leave the fallback of the 15 s voice limit, by default.
pub const DEFAULT_MIN_FALLBACK: Duration = Duration::from_secs(5);

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    primary_base: String,
    fallback_base: String,
    overrides: Option<String>,
    voice_path: Option<String>,
    sms_path: Option<String>,
    status_callback: Option<String>,
    min_fallback_seconds: Option<f64>,
}

/// The checked intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    /// `https://host[/prefix]`, no trailing slash: the primary's `--public-url`.
    pub primary_base: String,
    /// The fallback's, on another host.
    pub fallback_base: String,
    /// The primary URLs' fragment, without `#`; empty for none.
    pub overrides: String,
    /// `/voice` unless set.
    pub voice_path: String,
    /// `/sms` unless set.
    pub sms_path: String,
    /// The call status callback; `None` when the file sets `""` (left alone, not judged).
    pub status_callback: Option<String>,
    /// What the overrides must leave the voice fallback.
    pub min_fallback: Duration,
}

/// The four URLs and methods one channel should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intended {
    /// Primary URL with the overrides fragment.
    pub url: String,
    /// Fallback URL.
    pub fallback_url: String,
}

/// Which channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Calls.
    Voice,
    /// Messages.
    Sms,
}

impl Channel {
    /// `voice` or `sms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Sms => "sms",
        }
    }
}

fn base(key: &str, text: &str) -> Result<(String, Target), String> {
    let text = text.trim_end_matches('/');
    if text.contains(['#', '?']) {
        return Err(format!(
            "{key}: no ?query or #fragment in a base (overrides go in `overrides`)"
        ));
    }
    let target = Target::parse(text).map_err(|e| format!("{key}: {e}"))?;
    if !target.tls {
        return Err(format!("{key}: {text}: Twilio must reach it over https://"));
    }
    Ok((text.to_string(), target))
}

fn path(key: &str, text: Option<&str>, default: &str) -> Result<String, String> {
    let p = text.unwrap_or(default);
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!("{key}: expected a path like {default}, got {p:?}"))
    }
}

/// Checks a fragment (without `#`) strictly: every key known and in range, as the drill models
/// them. Returns the parsed settings.
pub fn check_overrides(fragment: &str) -> Result<Overrides, Vec<String>> {
    let (o, warnings) = overrides::parse(Some(fragment));
    if warnings.is_empty() {
        Ok(o)
    } else {
        Err(warnings)
    }
}

impl Wiring {
    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Wiring, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        let (primary_base, primary) = base("primary_base", &f.primary_base)?;
        let (fallback_base, fallback) = base("fallback_base", &f.fallback_base)?;
        if primary.host.eq_ignore_ascii_case(&fallback.host) {
            return Err(format!(
                "fallback_base: on the same host as primary_base ({}); the fallback must run elsewhere",
                primary.host
            ));
        }
        let min_fallback = match f.min_fallback_seconds {
            None => DEFAULT_MIN_FALLBACK,
            Some(s) if (0.0..=15.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => return Err(format!("min_fallback_seconds: {s} is not within 0–15")),
        };
        let overrides = f
            .overrides
            .as_deref()
            .unwrap_or(DEFAULT_OVERRIDES)
            .trim()
            .trim_start_matches('#')
            .to_string();
        // No overrides means Twilio's defaults, which are judged like any others.
        let o = check_overrides(&overrides).map_err(|w| format!("overrides: {}", w.join("; ")))?;
        if o.left_for_fallback() < min_fallback {
            return Err(format!(
                "overrides: {:?} can hold a call on a dead primary for {:.1} s, leaving the \
                 fallback {:.1} s of Twilio's 15 s (min_fallback_seconds = {:.1})",
                overrides,
                o.worst_case(true).as_secs_f64(),
                o.left_for_fallback().as_secs_f64(),
                min_fallback.as_secs_f64()
            ));
        }
        let status_callback = match f.status_callback.as_deref().map(str::trim) {
            Some("") => None,
            Some(url) => {
                Target::parse(url).map_err(|e| format!("status_callback: {e}"))?;
                Some(url.to_string())
            }
            None => None,
        };
        let mut w = Wiring {
            primary_base,
            fallback_base,
            overrides,
            voice_path: path("voice_path", f.voice_path.as_deref(), "/voice")?,
            sms_path: path("sms_path", f.sms_path.as_deref(), "/sms")?,
            status_callback,
            min_fallback,
        };
        if f.status_callback.is_none() {
            w.status_callback = Some(format!("{}/status", w.primary_base));
        }
        Ok(w)
    }

    /// Reads and parses the file at `path`; errors name the file.
    pub fn load(path: &std::path::Path) -> Result<Wiring, String> {
        let text = crate::operator_file::read_text(path, crate::operator_file::MAX_DOCUMENT_BYTES)
            .map_err(|e| format!("wiring: {e}"))?;
        Wiring::parse(&text).map_err(|e| format!("wiring: {}: {e}", path.display()))
    }

    /// `deploy/twilio/wiring.toml`, the shipped example: every default, voice.example.com as the
    /// primary and fallback.example.net as the fallback.
    pub fn example() -> Wiring {
        Wiring::parse(include_str!("../../deploy/twilio/wiring.toml"))
            .expect("the shipped example parses")
    }

    /// The URLs `channel` should have.
    pub fn intended(&self, channel: Channel) -> Intended {
        let p = match channel {
            Channel::Voice => &self.voice_path,
            Channel::Sms => &self.sms_path,
        };
        let mut url = format!("{}{p}", self.primary_base);
        if !self.overrides.is_empty() {
            url.push('#');
            url.push_str(&self.overrides);
        }
        Intended {
            url,
            fallback_url: format!("{}{p}", self.fallback_base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "primary_base = \"https://voice.example.com\"\nfallback_base = \"https://fallback.example.net/\"\n";

    #[test]
    fn defaults_fill_the_gaps() {
        let w = Wiring::parse(MIN).unwrap();
        assert_eq!(w.fallback_base, "https://fallback.example.net");
        assert_eq!(
            w.intended(Channel::Voice),
            Intended {
                url: "https://voice.example.com/voice#ct=1000&rt=4000&tt=6000&rc=1&rp=ct".into(),
                fallback_url: "https://fallback.example.net/voice".into(),
            }
        );
        assert_eq!(
            w.intended(Channel::Sms).fallback_url,
            "https://fallback.example.net/sms"
        );
        assert_eq!(
            w.status_callback.as_deref(),
            Some("https://voice.example.com/status")
        );
    }

    #[test]
    fn the_shipped_example_is_the_default() {
        assert_eq!(Wiring::example(), Wiring::parse(MIN).unwrap());
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            (format!("{MIN}colour = \"red\"\n"), "unknown field `colour`"),
            (
                "primary_base = \"https://a.example\"\nfallback_base = \"https://a.example/fb\"\n"
                    .to_string(),
                "fallback_base: on the same host",
            ),
            (
                "primary_base = \"http://a.example\"\nfallback_base = \"https://b.example\"\n"
                    .to_string(),
                "primary_base: http://a.example: Twilio must reach it over https://",
            ),
            (
                format!("{MIN}overrides = \"ct=50\"\n"),
                "overrides: ct=50: outside",
            ),
            (
                format!("{MIN}overrides = \"x=1\"\n"),
                "overrides: x: not a Twilio",
            ),
            (
                format!("{MIN}overrides = \"rt=15000\"\n"),
                "leaving the fallback 0.0 s",
            ),
            (
                format!("{MIN}overrides = \"\"\n"),
                "leaving the fallback 0.0 s",
            ),
            (
                format!("{MIN}voice_path = \"voice\"\n"),
                "voice_path: expected",
            ),
        ];
        for (text, want) in cases {
            let err = Wiring::parse(&text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn no_overrides_and_no_status_callback_when_asked() {
        let w = Wiring::parse(&format!(
            "{MIN}overrides = \"\"\nmin_fallback_seconds = 0\nstatus_callback = \"\"\n"
        ))
        .unwrap();
        assert_eq!(
            w.intended(Channel::Voice).url,
            "https://voice.example.com/voice"
        );
        assert_eq!(w.status_callback, None);
    }
}
