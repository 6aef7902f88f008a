//! The secrets a signature may be made with: auth tokens, subaccount tokens and shared keys.
//!
//! Which keys apply to a request depends on two things the request carries: the
//! `X-Twilio-Webhooks-Signature-Settings` header (shared-key signing) and the `AccountSid` parameter
//! (subaccounts sign with their own token). Secrets never appear in `Debug` output or logs.

use std::collections::HashMap;
use std::fmt;

use crate::signature::{Algorithm, Key};

/// A secret byte string whose `Debug` output is redacted, with its HMAC states made ready once.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    key: Key,
}

impl Secret {
    /// Wraps a secret, trimming the trailing newline that files and `echo` leave behind.
    pub fn new(value: &str) -> Self {
        let bytes = value.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
        let key = Key::new(&bytes);
        Secret { bytes, key }
    }

    /// The secret's bytes, for use as an HMAC key.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// True when the secret holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl AsRef<Key> for Secret {
    fn as_ref(&self) -> &Key {
        &self.key
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// All signing secrets the server accepts.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// The account's primary auth token.
    pub primary: Option<Secret>,
    /// The secondary token, accepted too while a rotation is in progress.
    pub secondary: Option<Secret>,
    /// Subaccount tokens by `AccountSid`; a request naming one of these accounts is checked against it.
    pub accounts: HashMap<String, Vec<Secret>>,
    /// Shared signing keys by key id.
    pub shared_keys: HashMap<String, Secret>,
}

/// The parsed `X-Twilio-Webhooks-Signature-Settings` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSettings<'a> {
    /// The shared key id (`key=`).
    pub key: Option<&'a str>,
    /// The algorithm name (`algorithm=`), `HMAC_SHA1` when absent.
    pub algorithm: &'a str,
}

impl<'a> SignatureSettings<'a> {
    /// Parses `key=<id>,algorithm=<name>`; unknown fields are ignored, whitespace is trimmed.
    pub fn parse(header: &'a str) -> Self {
        let mut key = None;
        let mut algorithm = "HMAC_SHA1";
        for part in header.split(',') {
            if let Some((name, value)) = part.split_once('=') {
                match name.trim() {
                    "key" => key = Some(value.trim()),
                    "algorithm" => algorithm = value.trim(),
                    _ => {}
                }
            }
        }
        SignatureSettings { key, algorithm }
    }
}

/// Why no key could be chosen for a request (a 403; the reason goes to the log only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The settings header names an algorithm we do not implement.
    #[error("unknown signature algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The settings header names a key id the config does not hold.
    #[error("unknown shared key id {0:?}")]
    UnknownKey(String),
    /// The settings header carries no key id.
    #[error("signature settings header without a key id")]
    MissingKey,
    /// No secret is configured at all (only possible for `sign`-less tooling).
    #[error("no auth token configured")]
    NoToken,
}

impl KeyRing {
    /// The algorithm and candidate keys for a request with these settings and `AccountSid`.
    pub fn keys_for(
        &self,
        settings: Option<&SignatureSettings<'_>>,
        account_sid: Option<&str>,
    ) -> Result<(Algorithm, Vec<&Secret>), KeyError> {
        if let Some(settings) = settings {
            let algorithm = Algorithm::from_name(settings.algorithm)
                .ok_or_else(|| KeyError::UnknownAlgorithm(truncate(settings.algorithm)))?;
            let id = settings.key.ok_or(KeyError::MissingKey)?;
            let secret = self
                .shared_keys
                .get(id)
                .ok_or_else(|| KeyError::UnknownKey(truncate(id)))?;
            return Ok((algorithm, vec![secret]));
        }
        if let Some(tokens) = account_sid.and_then(|sid| self.accounts.get(sid)) {
            return Ok((Algorithm::HmacSha1, tokens.iter().collect()));
        }
        let keys: Vec<&Secret> = self.primary.iter().chain(self.secondary.iter()).collect();
        if keys.is_empty() {
            return Err(KeyError::NoToken);
        }
        Ok((Algorithm::HmacSha1, keys))
    }
}

/// Keeps attacker-chosen text in log lines short.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        let mut ring = KeyRing {
            primary: Some(Secret::new("primary\n")),
            secondary: Some(Secret::new("secondary")),
            ..KeyRing::default()
        };
        ring.accounts
            .insert("ACsub".into(), vec![Secret::new("subtoken")]);
        ring.shared_keys.insert("k1".into(), Secret::new("shared"));
        ring
    }

    #[test]
    fn secrets_are_redacted_and_trimmed() {
        let s = Secret::new("abc\r\n");
        assert_eq!(s.expose(), b"abc");
        let debug = format!("{:?}", ring());
        for secret in ["\"primary", "secondary\"", "subtoken", "\"shared\""] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    fn bytes<'a>(keys: &[&'a Secret]) -> Vec<&'a [u8]> {
        keys.iter().map(|s| s.expose()).collect()
    }

    #[test]
    fn chooses_keys() {
        let r = ring();
        let (alg, keys) = r.keys_for(None, None).unwrap();
        assert_eq!(alg, Algorithm::HmacSha1);
        assert_eq!(bytes(&keys), vec![&b"primary"[..], &b"secondary"[..]]);
        let (_, keys) = r.keys_for(None, Some("ACsub")).unwrap();
        assert_eq!(bytes(&keys), vec![&b"subtoken"[..]]);
        let (_, keys) = r.keys_for(None, Some("ACother")).unwrap();
        assert_eq!(keys.len(), 2);
        let s = SignatureSettings::parse("key=k1, algorithm=HMAC_SHA256");
        let (alg, keys) = r.keys_for(Some(&s), Some("ACsub")).unwrap();
        assert_eq!(alg, Algorithm::HmacSha256);
        assert_eq!(bytes(&keys), vec![&b"shared"[..]]);
    }

    #[test]
    fn rejects_unknown_settings() {
        let r = ring();
        let s = SignatureSettings::parse("key=nope,algorithm=HMAC_SHA256");
        assert_eq!(
            r.keys_for(Some(&s), None),
            Err(KeyError::UnknownKey("nope".into()))
        );
        let s = SignatureSettings::parse("key=k1,algorithm=HMAC_MD5");
        assert_eq!(
            r.keys_for(Some(&s), None),
            Err(KeyError::UnknownAlgorithm("HMAC_MD5".into()))
        );
        let s = SignatureSettings::parse("algorithm=HMAC_SHA1");
        assert_eq!(r.keys_for(Some(&s), None), Err(KeyError::MissingKey));
        let s = SignatureSettings::parse("key=k1");
        assert_eq!(s.algorithm, "HMAC_SHA1");
        assert!(KeyRing::default().keys_for(None, None).is_err());
    }
}
