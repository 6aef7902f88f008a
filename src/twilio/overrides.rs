//! Twilio's connection overrides (`#ct= #rt= #tt= #rc= #rp=` in a webhook URL's fragment): parsing,
//! ranges and defaults, as the "Connection Overrides" page documents them. Pure.

use std::time::Duration;

use serde::Serialize;

/// Twilio's hard upper timeout on every call-related HTTP request; it overrides `tt`.
pub const VOICE_HARD_CAP: Duration = Duration::from_millis(15_000);

/// The conditions under which an attempt is retried (`rp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// TCP connect or TLS handshake failure.
    pub connect: bool,
    /// No response within the read timeout (never a partial response).
    pub read_timeout: bool,
    /// An HTTP 4xx answer.
    pub status_4xx: bool,
    /// An HTTP 5xx answer.
    pub status_5xx: bool,
}

impl RetryPolicy {
    /// Twilio's default: retry connect failures only.
    pub const CONNECT_ONLY: RetryPolicy = RetryPolicy {
        connect: true,
        read_timeout: false,
        status_4xx: false,
        status_5xx: false,
    };

    /// The policy in `rp` syntax (`ct,rt`), for reports.
    pub fn to_rp(self) -> String {
        let mut parts = Vec::new();
        for (on, name) in [
            (self.connect, "ct"),
            (self.read_timeout, "rt"),
            (self.status_4xx, "4xx"),
            (self.status_5xx, "5xx"),
        ] {
            if on {
                parts.push(name);
            }
        }
        if parts.len() == 4 {
            return "all".into();
        }
        if parts.is_empty() {
            return "none".into();
        }
        parts.join(",")
    }
}

/// The effective connection settings of one webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overrides {
    /// Connect timeout per attempt (`ct`, 100–10000 ms, default 5000).
    #[serde(rename = "ct_ms", serialize_with = "millis")]
    pub connect_timeout: Duration,
    /// Time to the first response byte and between bytes (`rt`, 100–15000 ms, default 15000).
    #[serde(rename = "rt_ms", serialize_with = "millis")]
    pub read_timeout: Duration,
    /// Total time for all attempts (`tt`, 100–15000 ms, default 15000).
    #[serde(rename = "tt_ms", serialize_with = "millis")]
    pub total_timeout: Duration,
    /// Retries after the first attempt (`rc`, 0–5, default 1).
    #[serde(rename = "rc")]
    pub retries: u32,
    /// When to retry (`rp`, default `ct`).
    #[serde(rename = "rp", serialize_with = "policy")]
    pub policy: RetryPolicy,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn policy<S: serde::Serializer>(p: &RetryPolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_rp())
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            connect_timeout: Duration::from_millis(5_000),
            read_timeout: Duration::from_millis(15_000),
            total_timeout: Duration::from_millis(15_000),
            retries: 1,
            policy: RetryPolicy::CONNECT_ONLY,
        }
    }
}

impl Overrides {
    /// The settings in fragment syntax, every key spelled out (`ct=5000&rt=15000&...`).
    pub fn describe(&self) -> String {
        format!(
            "ct={}&rt={}&tt={}&rc={}&rp={}",
            self.connect_timeout.as_millis(),
            self.read_timeout.as_millis(),
            self.total_timeout.as_millis(),
            self.retries,
            self.policy.to_rp()
        )
    }

    /// The time all attempts together may take: `tt`, and for voice never beyond the 15 s cap.
    pub fn budget(&self, voice: bool) -> Duration {
        if voice {
            self.total_timeout.min(VOICE_HARD_CAP)
        } else {
            self.total_timeout
        }
    }
}

impl Overrides {
    /// The longest Twilio can spend on this URL before giving up: every attempt taking its full
    /// connect and read timeouts, bounded by the budget (`tt`, for voice the 15 s cap).
    pub fn worst_case(&self, voice: bool) -> Duration {
        let attempts = self.retries.saturating_add(1);
        let per_attempt = self.connect_timeout + self.read_timeout;
        self.budget(voice).min(per_attempt.saturating_mul(attempts))
    }

    /// What a dead or hung primary with these settings leaves of the 15 s voice limit for the
    /// fallback URL.
    pub fn left_for_fallback(&self) -> Duration {
        VOICE_HARD_CAP.saturating_sub(self.worst_case(true))
    }
}

/// Splits a webhook URL into the URL Twilio requests and signs, and its fragment (if any).
pub fn split_fragment(url: &str) -> (&str, Option<&str>) {
    match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    }
}

/// Parses a fragment (`ct=1000&rt=4000`, without the `#`) into settings, Twilio's defaults filling
/// the gaps. Returns a warning per key that was ignored, unknown or clamped into its range:
/// Twilio's behaviour on such values is undocumented, so the drill says what it assumed.
pub fn parse(fragment: Option<&str>) -> (Overrides, Vec<String>) {
    let mut o = Overrides::default();
    let mut warnings = Vec::new();
    let Some(fragment) = fragment else {
        return (o, warnings);
    };
    for pair in fragment.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ct" => {
                if let Some(ms) = ranged(key, value, 100, 10_000, &mut warnings) {
                    o.connect_timeout = Duration::from_millis(ms);
                }
            }
            "rt" => {
                if let Some(ms) = ranged(key, value, 100, 15_000, &mut warnings) {
                    o.read_timeout = Duration::from_millis(ms);
                }
            }
            "tt" => {
                if let Some(ms) = ranged(key, value, 100, 15_000, &mut warnings) {
                    o.total_timeout = Duration::from_millis(ms);
                }
            }
            "rc" => {
                if let Some(n) = ranged(key, value, 0, 5, &mut warnings) {
                    o.retries = u32::try_from(n).unwrap_or(5);
                }
            }
            "rp" => match parse_policy(value) {
                Some(p) => o.policy = p,
                None => warnings.push(format!(
                    "rp={value}: not a list of 4xx, 5xx, ct, rt, all; using the default rp=ct"
                )),
            },
            "sni" | "e" => warnings.push(format!(
                "{key}={value}: accepted by Twilio but not modelled by the drill; ignored"
            )),
            _ => warnings.push(format!("{key}: not a Twilio connection override; ignored")),
        }
    }
    (o, warnings)
}

fn ranged(key: &str, value: &str, min: u64, max: u64, warnings: &mut Vec<String>) -> Option<u64> {
    let Ok(n) = value.parse::<u64>() else {
        warnings.push(format!(
            "{key}={value}: not a whole number; using the default"
        ));
        return None;
    };
    let clamped = n.clamp(min, max);
    if clamped != n {
        warnings.push(format!(
            "{key}={n}: outside {min}–{max}; assuming Twilio clamps it to {clamped}"
        ));
    }
    Some(clamped)
}

fn parse_policy(value: &str) -> Option<RetryPolicy> {
    let mut p = RetryPolicy::default();
    for item in value.split(',') {
        match item {
            "ct" => p.connect = true,
            "rt" => p.read_timeout = true,
            "4xx" => p.status_4xx = true,
            "5xx" => p.status_5xx = true,
            "all" => {
                p = RetryPolicy {
                    connect: true,
                    read_timeout: true,
                    status_4xx: true,
                    status_5xx: true,
                }
            }
            _ => return None,
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_absent_match_twilio() {
        let (o, w) = parse(None);
        assert!(w.is_empty());
        assert_eq!(o.describe(), "ct=5000&rt=15000&tt=15000&rc=1&rp=ct");
        assert_eq!(parse(Some("")).0, o);
    }

    #[test]
    fn documented_examples() {
        let (o, w) = parse(Some("ct=1000&rt=1000"));
        assert!(w.is_empty());
        assert_eq!(o.describe(), "ct=1000&rt=1000&tt=15000&rc=1&rp=ct");
        let (o, _) = parse(Some("rt=5000&rp=ct,rt"));
        assert_eq!(
            (o.read_timeout.as_millis(), o.policy.to_rp().as_str()),
            (5000, "ct,rt")
        );
        let (o, _) = parse(Some("rc=2&ct=1000"));
        assert_eq!((o.retries, o.connect_timeout.as_millis()), (2, 1000));
        let (o, _) = parse(Some("rp=all"));
        assert_eq!(o.policy.to_rp(), "all");
        let (o, _) = parse(Some("rp=4xx,5xx"));
        assert!(o.policy.status_4xx && o.policy.status_5xx && !o.policy.connect);
    }

    #[test]
    fn out_of_range_is_clamped_and_said() {
        let (o, w) = parse(Some("ct=50&rt=20000&rc=9&tt=15000"));
        assert_eq!(o.describe(), "ct=100&rt=15000&tt=15000&rc=5&rp=ct");
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("ct=50: outside 100–10000"), "{w:?}");
    }

    #[test]
    fn bad_and_unknown_keys_keep_defaults() {
        let (o, w) = parse(Some("ct=abc&rp=sometimes&x=1&sni=n&e=dublin"));
        assert_eq!(o, Overrides::default());
        assert_eq!(w.len(), 5, "{w:?}");
    }

    #[test]
    fn voice_budget_never_exceeds_the_hard_cap() {
        let (o, _) = parse(Some("tt=4000"));
        assert_eq!(o.budget(true), Duration::from_millis(4000));
        assert_eq!(Overrides::default().budget(true), VOICE_HARD_CAP);
    }

    #[test]
    fn what_a_dead_primary_leaves_the_fallback() {
        // The wiring `numbers` writes: at most 6 s on the primary, 9 s left.
        let (o, _) = parse(Some("ct=1000&rt=4000&tt=6000&rc=1&rp=ct"));
        assert_eq!(o.left_for_fallback(), Duration::from_millis(9_000));
        // Twilio's defaults leave nothing.
        assert_eq!(Overrides::default().left_for_fallback(), Duration::ZERO);
        // Short timeouts bound the time before tt does: 2 attempts x (500 + 1000) ms.
        let (o, _) = parse(Some("ct=500&rt=1000&rc=1"));
        assert_eq!(o.worst_case(true), Duration::from_millis(3_000));
    }

    #[test]
    fn fragment_is_split_off() {
        assert_eq!(
            split_fragment("https://a.example/voice?x=1#ct=1000"),
            ("https://a.example/voice?x=1", Some("ct=1000"))
        );
        assert_eq!(split_fragment("http://a/b"), ("http://a/b", None));
    }
}
