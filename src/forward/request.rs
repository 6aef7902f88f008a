//! The request a journaled event becomes when forwarded: the original form body, signed
//! Twilio-style for the forward URL, plus headers that say what the event is. Pure.
//!
//! The signature uses the same token Twilio would have used for the event's `AccountSid` (the
//! subaccount's token when one is configured, else the primary token), so an internal app that
//! already validates Twilio signatures accepts the forwarded request unchanged.

use percent_encoding::{utf8_percent_encode, CONTROLS};

use crate::journal::time::rfc3339;
use crate::journal::Event;
use crate::keyring::{KeyError, KeyRing};
use crate::signature::{self, Algorithm};

/// The event's idempotency key: the same value each time the event is sent.
pub const IDEMPOTENCY_KEY: &str = "x-twiml-failover-idempotency-key";
/// When twiml-failover received the webhook, RFC 3339 UTC with milliseconds.
pub const RECEIVED_AT: &str = "x-twiml-failover-received-at";
/// `primary` or `fallback`: which role accepted the webhook.
pub const ROLE: &str = "x-twiml-failover-role";
/// The event's id in the journal.
pub const EVENT_ID: &str = "x-twiml-failover-event-id";
/// The original request path (e.g. `/sms`).
pub const PATH: &str = "x-twiml-failover-path";
/// Twilio's signature header, recomputed for the forward URL.
pub const SIGNATURE: &str = "x-twilio-signature";

/// A forwarded request, ready to send as `POST` to the URL it was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `application/x-www-form-urlencoded` body: every parameter in its original order.
    pub body: String,
    /// Headers besides Host, Content-Type and Content-Length; values are visible ASCII.
    pub headers: Vec<(&'static str, String)>,
}

/// Builds the forwarded request for `event`, signed for `url` with the event's account token.
pub fn build(event: &Event, url: &str, keyring: &KeyRing) -> Result<Forward, KeyError> {
    let e = &event.webhook;
    let (_, keys) = keyring.keys_for(None, e.account_sid.as_deref())?;
    let token = keys.first().ok_or(KeyError::NoToken)?;
    let signature = signature::sign(Algorithm::HmacSha1, token.expose(), url, &e.params);
    let body = serde_urlencoded::to_string(&e.params).unwrap_or_default();
    Ok(Forward {
        body,
        headers: vec![
            (SIGNATURE, signature),
            (IDEMPOTENCY_KEY, header_safe(&e.idempotency_key)),
            (RECEIVED_AT, rfc3339(e.received_at_ms)),
            (ROLE, e.role.as_str().to_string()),
            (EVENT_ID, event.id.to_string()),
            (PATH, header_safe(&e.path)),
        ],
    })
}

/// Percent-encodes control and non-ASCII characters so the value is a valid header value.
fn header_safe(value: &str) -> String {
    utf8_percent_encode(value, CONTROLS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewEvent;
    use crate::keyring::Secret;
    use crate::twilio::Role;

    const URL: &str = "https://crm.internal.example/twilio/sms?src=failover";

    fn event(account: Option<&str>) -> Event {
        Event {
            id: 42,
            webhook: NewEvent {
                received_at_ms: 1_764_088_330_123,
                role: Role::Fallback,
                method: "POST".into(),
                url: "https://sms.example.com/sms".into(),
                path: "/sms".into(),
                params: vec![
                    ("To".into(), "+15550199999".into()),
                    ("Body".into(), "héllo & <bye>".into()),
                    ("MediaUrl".into(), "b".into()),
                    ("MediaUrl".into(), "a".into()),
                    ("AccountSid".into(), account.unwrap_or("ACmain").into()),
                ],
                error_code: Some("11205".into()),
                error_url: None,
                idempotency_key: "SM1:sms\n".into(),
                conversation: "SM1".into(),
                account_sid: account.map(str::to_string),
            },
            delivered_at_ms: None,
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
        }
    }

    fn ring() -> KeyRing {
        let mut ring = KeyRing {
            primary: Some(Secret::new("primary-token")),
            secondary: Some(Secret::new("secondary-token")),
            ..KeyRing::default()
        };
        ring.accounts.insert(
            "ACsub".into(),
            vec![Secret::new("sub-token"), Secret::new("sub-old")],
        );
        ring
    }

    fn valid(token: &str, url: &str, e: &Event, sig: &str) -> bool {
        signature::verify(
            Algorithm::HmacSha1,
            &[token.as_bytes()],
            url,
            &e.webhook.params,
            sig,
        )
    }

    fn header<'a>(f: &'a Forward, name: &str) -> &'a str {
        &f.headers.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn body_keeps_every_parameter_in_order() {
        let f = build(&event(None), URL, &ring()).unwrap();
        let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&f.body).unwrap();
        assert_eq!(decoded, event(None).webhook.params);
    }

    #[test]
    fn signature_validates_for_the_forward_url_with_the_primary_token() {
        let e = event(None);
        let f = build(&e, URL, &ring()).unwrap();
        let sig = header(&f, SIGNATURE);
        assert!(valid("primary-token", URL, &e, sig));
        assert!(!valid("primary-token", &e.webhook.url, &e, sig));
        assert!(!valid("secondary-token", URL, &e, sig));
    }

    #[test]
    fn subaccount_events_are_signed_with_the_subaccount_token() {
        let e = event(Some("ACsub"));
        let f = build(&e, URL, &ring()).unwrap();
        let sig = header(&f, SIGNATURE);
        assert!(valid("sub-token", URL, &e, sig));
        // An AccountSid the config does not know falls back to the primary token.
        let e = event(Some("ACunknown"));
        let f = build(&e, URL, &ring()).unwrap();
        let sig = header(&f, SIGNATURE);
        assert!(valid("primary-token", URL, &e, sig));
    }

    #[test]
    fn headers_describe_the_event() {
        let f = build(&event(None), URL, &ring()).unwrap();
        assert_eq!(header(&f, IDEMPOTENCY_KEY), "SM1:sms%0A");
        assert_eq!(header(&f, RECEIVED_AT), "2025-11-25T16:32:10.123Z");
        assert_eq!(header(&f, ROLE), "fallback");
        assert_eq!(header(&f, EVENT_ID), "42");
        assert_eq!(header(&f, PATH), "/sms");
        for (name, value) in &f.headers {
            assert!(
                http::HeaderValue::from_str(value).is_ok(),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn no_token_is_an_error_not_a_panic() {
        assert!(build(&event(None), URL, &KeyRing::default()).is_err());
    }
}
