//! What gets journaled for a verified webhook: its idempotency key (so Twilio's retries land on one
//! row) and its conversation (the ordering group for delivery). Pure.

use sha2::{Digest, Sha256};

use super::NewEvent;
use crate::twilio::Role;
use crate::webhook::Params;

/// The header Twilio sets to the same value on every retry of one webhook.
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

/// A verified request, as the handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Arrival time, unix ms.
    pub received_at_ms: i64,
    /// The answering role.
    pub role: Role,
    /// The request method.
    pub method: &'a str,
    /// The URL Twilio signed.
    pub url: &'a str,
    /// The request path.
    pub path: &'a str,
    /// Body then query parameters.
    pub params: &'a Params,
    /// The `I-Twilio-Idempotency-Token` header, if sent once and usable.
    pub idempotency_token: Option<&'a str>,
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).filter(|v| !v.is_empty())
}

/// The token if Twilio sent a sane one; anything else falls back to the derived key.
fn usable_token(token: Option<&str>) -> Option<&str> {
    token
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200 && !t.chars().any(char::is_control))
}

/// The idempotency key: the token header, else `<Sid>:<path>[:<status>]:<digest>`, where Sid is
/// CallSid, MessageSid or SmsSid, status is the CallStatus/MessageStatus/SmsStatus value (so each
/// status callback of a call is its own event) and digest covers the sorted parameters. The digest
/// keeps two different visits of one call to one path apart (a `<Gather>` answered twice with other
/// `Digits`), while a Twilio retry, which repeats the request byte for byte, still lands on one row.
/// `ErrorCode`/`ErrorUrl` are left out of the digest: the same event keeps its key on the fallback.
pub fn idempotency_key(token: Option<&str>, path: &str, params: &Params) -> String {
    if let Some(token) = usable_token(token) {
        return token.to_string();
    }
    let digest = params_digest(params);
    let Some(sid) = ["CallSid", "MessageSid", "SmsSid"]
        .iter()
        .find_map(|name| param(params, name))
    else {
        return format!("sha256-{digest}:{path}");
    };
    let status = ["CallStatus", "MessageStatus", "SmsStatus"]
        .iter()
        .find_map(|name| param(params, name));
    match status {
        Some(status) => format!("{sid}:{path}:{status}:{}", &digest[..16]),
        None => format!("{sid}:{path}:{}", &digest[..16]),
    }
}

/// Hex SHA-256 of the sorted parameters, leaving out what Twilio adds for the fallback.
fn params_digest(params: &Params) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "ErrorCode" && *k != "ErrorUrl")
        .collect();
    sorted.sort();
    let mut hash = Sha256::new();
    for (k, v) in sorted {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        for part in [k, v] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
    }
    hex::encode(hash.finalize())
}

/// Builds the journal record of a verified request.
pub fn new_event(r: Received<'_>) -> NewEvent {
    let idempotency_key = idempotency_key(r.idempotency_token, r.path, r.params);
    let conversation = ["CallSid", "MessageSid", "SmsSid"]
        .iter()
        .find_map(|name| param(r.params, name))
        .map_or_else(|| idempotency_key.clone(), str::to_string);
    NewEvent {
        received_at_ms: r.received_at_ms,
        role: r.role,
        method: r.method.to_string(),
        url: r.url.to_string(),
        path: r.path.to_string(),
        params: r.params.to_pairs(),
        error_code: param(r.params, "ErrorCode").map(str::to_string),
        error_url: param(r.params, "ErrorUrl").map(str::to_string),
        idempotency_key,
        conversation,
        account_sid: param(r.params, "AccountSid").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Params {
        list.iter().copied().collect()
    }

    #[test]
    fn token_header_wins() {
        let params = p(&[("MessageSid", "SM1")]);
        assert_eq!(idempotency_key(Some(" tok-1 "), "/sms", &params), "tok-1");
        let derived = idempotency_key(None, "/sms", &params);
        assert!(derived.starts_with("SM1:/sms:"), "{derived}");
        assert_eq!(idempotency_key(Some(""), "/sms", &params), derived);
        assert_eq!(idempotency_key(Some("a\nb"), "/sms", &params), derived);
    }

    #[test]
    fn a_gather_answered_twice_is_two_events_but_a_retry_is_one() {
        let first = p(&[
            ("CallSid", "CA1"),
            ("CallStatus", "in-progress"),
            ("Digits", "1"),
        ]);
        let again = p(&[
            ("CallSid", "CA1"),
            ("CallStatus", "in-progress"),
            ("Digits", "2"),
        ]);
        let key = idempotency_key(None, "/voice/menu", &first);
        assert!(key.starts_with("CA1:/voice/menu:in-progress:"), "{key}");
        assert_ne!(key, idempotency_key(None, "/voice/menu", &again));
        assert_eq!(key, idempotency_key(None, "/voice/menu", &first.clone()));
        let mut on_fallback = first.clone();
        on_fallback.push("ErrorCode", "11205");
        on_fallback.push("ErrorUrl", "https://voice.example.com/voice/menu");
        assert_eq!(key, idempotency_key(None, "/voice/menu", &on_fallback));
    }

    #[test]
    fn status_callbacks_of_different_states_are_distinct() {
        let ringing = p(&[("CallSid", "CA1"), ("CallStatus", "ringing")]);
        let done = p(&[("CallSid", "CA1"), ("CallStatus", "completed")]);
        assert!(idempotency_key(None, "/status", &ringing).starts_with("CA1:/status:ringing:"));
        assert_ne!(
            idempotency_key(None, "/status", &ringing),
            idempotency_key(None, "/status", &done)
        );
        let sms = p(&[("SmsSid", "SM9"), ("SmsStatus", "received")]);
        assert!(idempotency_key(None, "/sms", &sms).starts_with("SM9:/sms:received:"));
    }

    #[test]
    fn without_a_sid_the_sorted_params_decide() {
        let a = p(&[("x", "1"), ("y", "2")]);
        let b = p(&[("y", "2"), ("x", "1")]);
        let c = p(&[("x", "12"), ("y", "")]);
        let key = idempotency_key(None, "/hook", &a);
        assert!(key.starts_with("sha256-") && key.ends_with(":/hook"));
        assert_eq!(key, idempotency_key(None, "/hook", &b));
        assert_ne!(key, idempotency_key(None, "/hook", &c));
    }

    #[test]
    fn event_carries_everything() {
        let params = p(&[
            ("CallSid", "CA7"),
            ("MessageSid", "SM7"),
            ("AccountSid", "AC1"),
            ("ErrorCode", "11205"),
            ("ErrorUrl", "https://p/voice"),
            ("q", "1"),
        ]);
        let e = new_event(Received {
            received_at_ms: 5,
            role: Role::Fallback,
            method: "POST",
            url: "https://f/voice?q=1",
            path: "/voice",
            params: &params,
            idempotency_token: None,
        });
        assert_eq!(e.conversation, "CA7");
        assert_eq!(
            e.idempotency_key,
            idempotency_key(None, "/voice", &params),
            "the event's key is the derived one"
        );
        assert!(e.idempotency_key.starts_with("CA7:/voice:"));
        assert_eq!(e.error_code.as_deref(), Some("11205"));
        assert_eq!(e.error_url.as_deref(), Some("https://p/voice"));
        assert_eq!(e.account_sid.as_deref(), Some("AC1"));
        assert_eq!(e.params, params.to_pairs());
        let bare = new_event(Received {
            params: &Params::new(),
            idempotency_token: Some("tok"),
            ..Received {
                received_at_ms: 0,
                role: Role::Primary,
                method: "GET",
                url: "u",
                path: "/x",
                params: &Params::new(),
                idempotency_token: None,
            }
        });
        assert_eq!(bare.conversation, "tok");
    }
}
