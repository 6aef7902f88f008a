//! Authenticating a decoded webhook: picks the keys, checks `X-Twilio-Signature`, and for JSON bodies
//! the `bodySHA256` hash. Pure. Every failure is a 403 whose reason goes to the log, never the body.

use http::{HeaderMap, HeaderName};

use crate::keyring::{KeyError, KeyRing, SignatureSettings};
use crate::signature;
use crate::webhook::{header_once, single_header, Params, Payload, Repeated, Webhook};

/// The header carrying Twilio's signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The header naming a shared key and algorithm.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";
// As header names, so a lookup does not parse the name again.
static SIGNATURE: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);
static SETTINGS: HeaderName = HeaderName::from_static(SETTINGS_HEADER);

/// Why a request is not accepted as genuine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `X-Twilio-Signature` header (or more than one).
    #[error("missing signature")]
    MissingSignature,
    /// The signature matches no key and URL form.
    #[error("signature mismatch")]
    BadSignature,
    /// A JSON body without `bodySHA256` in the query: Twilio always adds it.
    #[error("JSON body without bodySHA256")]
    JsonWithoutHash,
    /// The JSON body does not hash to `bodySHA256`.
    #[error("body does not match bodySHA256")]
    BodyHashMismatch,
    /// The signature settings header names an unknown key or algorithm.
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// Every [`AuthError::label`]: `signature_failures_total{reason}` has each from start-up.
pub const REASONS: [&str; 7] = [
    "missing",
    "mismatch",
    "json_without_hash",
    "body_hash",
    "unknown_algorithm",
    "unknown_key",
    "no_token",
];

impl AuthError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::MissingSignature => "missing",
            AuthError::BadSignature => "mismatch",
            AuthError::JsonWithoutHash => "json_without_hash",
            AuthError::BodyHashMismatch => "body_hash",
            AuthError::Key(KeyError::UnknownAlgorithm(_)) => "unknown_algorithm",
            AuthError::Key(KeyError::UnknownKey(_) | KeyError::MissingKey) => "unknown_key",
            AuthError::Key(KeyError::NoToken) => "no_token",
        }
    }
}

/// The signature settings header, when sent once; more than once is refused.
fn settings(headers: &HeaderMap) -> Result<Option<SignatureSettings<'_>>, AuthError> {
    match header_once(headers, &SETTINGS) {
        Ok(None) => Ok(None),
        Ok(Some(value)) => Ok(Some(SignatureSettings::parse(
            value.to_str().map_err(|_| KeyError::MissingKey)?,
        ))),
        Err(Repeated) => Err(KeyError::MissingKey.into()),
    }
}

/// The key a genuine webhook was signed with: what upstream mode signs the upstream's copy with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signer<'k> {
    /// The algorithm Twilio used.
    pub algorithm: signature::Algorithm,
    /// The token or shared key that matched.
    pub key: &'k [u8],
}

/// Accepts the webhook only if it carries a valid signature from one of the keyring's keys, and
/// says which key that was.
pub fn authenticate<'k>(
    keys: &'k KeyRing,
    headers: &HeaderMap,
    hook: &Webhook,
) -> Result<Signer<'k>, AuthError> {
    let signature = single_header(headers, &SIGNATURE).ok_or(AuthError::MissingSignature)?;
    let settings = settings(headers)?;
    let (algorithm, candidates) = keys.keys_for(settings.as_ref(), hook.param("AccountSid"))?;
    // GET and JSON requests sign the URL alone; an empty `Params` does not allocate.
    let no_params = Params::new();
    let params = match &hook.payload {
        Payload::Form(params) => params,
        Payload::Query | Payload::Json(_) => &no_params,
    };
    let matched = signature::matching_key(algorithm, &candidates, &hook.url, params, signature);
    let signer = matched.map(|i| Signer {
        algorithm,
        key: candidates[i].expose(),
    });
    if let Payload::Json(body) = &hook.payload {
        let hash = hook
            .query
            .get("bodySHA256")
            .ok_or(AuthError::JsonWithoutHash)?;
        let hash_ok = signature::body_matches(body, hash);
        let signer = signer.ok_or(AuthError::BadSignature)?;
        if !hash_ok {
            return Err(AuthError::BodyHashMismatch);
        }
        return Ok(signer);
    }
    signer.ok_or(AuthError::BadSignature)
}

/// What a refused signature was checked against, for the 403's log line: the URL forms tried, the
/// algorithm and which keys. Never a key, a token or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// Every URL form the signature was computed over, in order (as rebuilt, then with the
    /// scheme's default port added or removed, as Twilio's SDKs accept).
    pub urls: Vec<String>,
    /// `HMAC_SHA1` or `HMAC_SHA256`.
    pub algorithm: &'static str,
    /// Which keys: `auth token`, `subaccount token`, or `shared key`.
    pub key_kind: &'static str,
    /// How many keys of that kind (2 while a secondary token is set).
    pub key_count: usize,
}

/// Describes what [`authenticate`] checked the request against; `None` when it never got as far
/// as comparing a signature (no keys for the request).
pub fn attempted(keys: &KeyRing, headers: &HeaderMap, hook: &Webhook) -> Option<Attempted> {
    let settings = settings(headers).ok()?;
    let account = hook.param("AccountSid");
    let (algorithm, candidates) = keys.keys_for(settings.as_ref(), account).ok()?;
    let key_kind = if settings.is_some() {
        "shared key"
    } else if account.is_some_and(|sid| keys.accounts.contains_key(sid)) {
        "subaccount token"
    } else {
        "auth token"
    };
    let urls = std::iter::once(hook.url.clone())
        .chain(signature::toggle_default_port(&hook.url))
        .collect();
    Some(Attempted {
        urls,
        algorithm: algorithm.name(),
        key_kind,
        key_count: candidates.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::Secret;
    use crate::signature::{sign, Algorithm, NO_PARAMS};

    #[test]
    fn every_reason_has_its_series_from_start_up() {
        let errors = [
            AuthError::MissingSignature,
            AuthError::BadSignature,
            AuthError::JsonWithoutHash,
            AuthError::BodyHashMismatch,
            AuthError::Key(KeyError::UnknownAlgorithm(String::new())),
            AuthError::Key(KeyError::UnknownKey(String::new())),
            AuthError::Key(KeyError::MissingKey),
            AuthError::Key(KeyError::NoToken),
        ];
        for e in &errors {
            assert!(REASONS.contains(&e.label()), "{}", e.label());
        }
    }

    fn ring() -> KeyRing {
        let mut r = KeyRing {
            primary: Some(Secret::new("tok")),
            ..KeyRing::default()
        };
        r.shared_keys.insert("k".into(), Secret::new("sh"));
        r
    }

    fn form(url: &str, params: &[(&str, &str)]) -> Webhook {
        Webhook {
            url: url.into(),
            payload: Payload::Form(params.iter().copied().collect()),
            query: Params::new(),
        }
    }

    fn with_sig(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    #[test]
    fn form_signatures() {
        let hook = form("https://x/voice", &[("CallSid", "CA1")]);
        let sig = sign(
            Algorithm::HmacSha1,
            b"tok",
            "https://x/voice",
            &[("CallSid", "CA1")],
        );
        assert!(authenticate(&ring(), &with_sig(&sig), &hook).is_ok());
        assert_eq!(
            authenticate(&ring(), &HeaderMap::new(), &hook),
            Err(AuthError::MissingSignature)
        );
        let hook2 = form("https://x/voice", &[("CallSid", "CA2")]);
        assert_eq!(
            authenticate(&ring(), &with_sig(&sig), &hook2),
            Err(AuthError::BadSignature)
        );
        let mut twice = with_sig(&sig);
        twice.append(SIGNATURE_HEADER, sig.parse().unwrap());
        assert_eq!(
            authenticate(&ring(), &twice, &hook),
            Err(AuthError::MissingSignature)
        );
    }

    #[test]
    fn a_refusal_says_what_was_tried_without_secrets() {
        let hook = form("https://x.example/voice?a=1", &[("CallSid", "CA1")]);
        let mut r = ring();
        r.secondary = Some(Secret::new("tok2"));
        let tried = attempted(&r, &with_sig("bm9wZQ=="), &hook).unwrap();
        assert_eq!(
            tried,
            Attempted {
                urls: vec![
                    "https://x.example/voice?a=1".into(),
                    "https://x.example:443/voice?a=1".into()
                ],
                algorithm: "HMAC_SHA1",
                key_kind: "auth token",
                key_count: 2,
            }
        );
        let text = format!("{tried:?}");
        assert!(
            !text.contains("tok2") && !text.contains("\"tok\""),
            "{text}"
        );
        let mut h = with_sig("bm9wZQ==");
        h.insert(
            SETTINGS_HEADER,
            "key=k,algorithm=HMAC_SHA256".parse().unwrap(),
        );
        let shared = attempted(&ring(), &h, &hook).unwrap();
        assert_eq!(
            (shared.key_kind, shared.algorithm, shared.key_count),
            ("shared key", "HMAC_SHA256", 1)
        );
    }

    #[test]
    fn shared_keys() {
        let hook = form("https://x/voice", &[("CallSid", "CA1")]);
        let sig = sign(
            Algorithm::HmacSha256,
            b"sh",
            "https://x/voice",
            &[("CallSid", "CA1")],
        );
        let mut h = with_sig(&sig);
        h.insert(
            SETTINGS_HEADER,
            "key=k,algorithm=HMAC_SHA256".parse().unwrap(),
        );
        assert!(authenticate(&ring(), &h, &hook).is_ok());
        h.insert(
            SETTINGS_HEADER,
            "key=zz,algorithm=HMAC_SHA256".parse().unwrap(),
        );
        assert_eq!(
            authenticate(&ring(), &h, &hook).unwrap_err().label(),
            "unknown_key"
        );
        h.insert(
            SETTINGS_HEADER,
            "key=k,algorithm=HMAC_SHA512".parse().unwrap(),
        );
        assert_eq!(
            authenticate(&ring(), &h, &hook).unwrap_err().label(),
            "unknown_algorithm"
        );
    }

    #[test]
    fn json_bodies_need_the_hash() {
        let body = bytes::Bytes::from_static(br#"{"a":1}"#);
        let hash = signature::body_sha256_hex(&body);
        let url = format!("https://x/voice?bodySHA256={hash}");
        let sig = sign(Algorithm::HmacSha1, b"tok", &url, &NO_PARAMS);
        let hook = Webhook {
            url: url.clone(),
            payload: Payload::Json(body),
            query: [("bodySHA256", hash.as_str())].into_iter().collect(),
        };
        assert!(authenticate(&ring(), &with_sig(&sig), &hook).is_ok());
        let tampered = Webhook {
            payload: Payload::Json(bytes::Bytes::from_static(br#"{"a":2}"#)),
            ..hook.clone()
        };
        assert_eq!(
            authenticate(&ring(), &with_sig(&sig), &tampered),
            Err(AuthError::BodyHashMismatch)
        );
        let no_hash = Webhook {
            query: Params::new(),
            ..hook
        };
        assert_eq!(
            authenticate(&ring(), &with_sig(&sig), &no_hash),
            Err(AuthError::JsonWithoutHash)
        );
    }

    #[test]
    fn the_signer_is_the_key_that_matched() {
        let mut ring = ring();
        ring.secondary = Some(Secret::new("old"));
        let hook = form("https://x/voice", &[("CallSid", "CA1")]);
        let sig = sign(
            Algorithm::HmacSha1,
            b"old",
            "https://x/voice",
            &[("CallSid", "CA1")],
        );
        let signer = authenticate(&ring, &with_sig(&sig), &hook).unwrap();
        assert_eq!(
            (signer.algorithm, signer.key),
            (Algorithm::HmacSha1, &b"old"[..])
        );
    }
}
