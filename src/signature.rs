//! Twilio request signatures: the string Twilio signs, its HMAC, and a constant-time check. Pure, no I/O.
//!
//! Twilio signs `url + name1 + value1 + name2 + value2 ...` (form parameters sorted by name, byte order)
//! with HMAC keyed by the auth token (or a shared key), and sends it base64-encoded in
//! `X-Twilio-Signature`. The official SDKs are the reference: repeated names contribute each distinct
//! value once, in sorted order; the URL is accepted with and without its default port.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest as _;

/// The MAC algorithm a signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1, what Twilio uses with the account auth token.
    HmacSha1,
    /// HMAC-SHA256, available with shared-key signing.
    HmacSha256,
}

impl Algorithm {
    /// Parses the name used in `X-Twilio-Webhooks-Signature-Settings` (`HMAC_SHA1`, `HMAC_SHA256`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HMAC_SHA1" => Some(Self::HmacSha1),
            "HMAC_SHA256" => Some(Self::HmacSha256),
            _ => None,
        }
    }

    /// The name Twilio uses for this algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC_SHA1",
            Self::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// A list of `(name, value)` request parameters in arrival order: slices, vectors and arrays of
/// string pairs, and [`crate::webhook::Params`].
pub trait ParamList {
    /// Each pair, in order.
    fn each(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl<K: AsRef<str>, V: AsRef<str>> ParamList for [(K, V)] {
    fn each(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> ParamList for Vec<(K, V)> {
    fn each(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_slice().each()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> ParamList for [(K, V); N] {
    fn each(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_slice().each()
    }
}

/// No form parameters: what GET and JSON requests sign besides their URL.
pub const NO_PARAMS: [(&str, &str); 0] = [];

/// The parameter part of the signed string: each `name + value`, sorted by name then value, where a
/// name repeated with an identical value counts once (as in twilio-python and twilio-node).
pub fn params_suffix<P: ParamList + ?Sized>(params: &P) -> String {
    let pairs = signed_pairs(params);
    let len = pairs.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    let mut out = String::with_capacity(len);
    for (_, k, v) in pairs {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// The parameters in the order they are signed, each distinct pair once, after the first eight
/// bytes of their name.
fn signed_pairs<P: ParamList + ?Sized>(params: &P) -> Vec<(u64, &str, &str)> {
    // Sorted by the first eight bytes of the name before the whole pair: most comparisons are then
    // one integer comparison instead of a `memcmp` call. Zero-padded big-endian prefixes order
    // exactly as the bytes do, and equal prefixes fall through to the full comparison.
    let mut keyed: Vec<(u64, &str, &str)> =
        params.each().map(|(k, v)| (name_prefix(k), k, v)).collect();
    keyed.sort_unstable();
    keyed.dedup();
    keyed
}

/// The first eight bytes of `name` as a big-endian integer, zero-padded.
fn name_prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// Computes the base64 signature Twilio would send for `url` and `params`.
pub fn sign<P: ParamList + ?Sized>(
    algorithm: Algorithm,
    key: &[u8],
    url: &str,
    params: &P,
) -> String {
    let pairs = signed_pairs(params);
    let mac = Keyed::new(algorithm, &Key::new(key), url, &pairs).finalize();
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// A signing key made ready for both algorithms: HMAC hashes the padded key into an inner and an
/// outer state before any message, so that is done once per key here, and each signature starts
/// from a copy of those states (two hash compressions fewer per signature).
#[derive(Clone)]
pub struct Key {
    sha1: Hmac<sha1::Sha1>,
    sha256: Hmac<sha2::Sha256>,
}

impl Key {
    /// The states for `secret`.
    pub fn new(secret: &[u8]) -> Key {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        Key {
            sha1: Hmac::new_from_slice(secret).expect("HMAC takes any key length"),
            sha256: Hmac::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }
}

impl AsRef<Key> for Key {
    fn as_ref(&self) -> &Key {
        self
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// An HMAC of either algorithm, fed with the URL and then each sorted name and value (the signed
/// string, without building it).
enum Keyed {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
}

impl Keyed {
    fn new(algorithm: Algorithm, key: &Key, url: &str, pairs: &[(u64, &str, &str)]) -> Keyed {
        let mut keyed = match algorithm {
            Algorithm::HmacSha1 => Keyed::Sha1(key.sha1.clone()),
            Algorithm::HmacSha256 => Keyed::Sha256(key.sha256.clone()),
        };
        let parts = pairs
            .iter()
            .flat_map(|(_, k, v)| [k.as_bytes(), v.as_bytes()]);
        for part in std::iter::once(url.as_bytes()).chain(parts) {
            match &mut keyed {
                Keyed::Sha1(mac) => mac.update(part),
                Keyed::Sha256(mac) => mac.update(part),
            }
        }
        keyed
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Keyed::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
            Keyed::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
        }
    }

    /// Constant-time comparison with `expected`.
    fn matches(self, expected: &[u8]) -> bool {
        match self {
            Keyed::Sha1(mac) => mac.verify_slice(expected).is_ok(),
            Keyed::Sha256(mac) => mac.verify_slice(expected).is_ok(),
        }
    }
}

/// True when `signature` (the header's base64 text) is a valid signature of `url` and `params`
/// under any of `keys`, trying the URL as received and with its default port toggled.
///
/// Every MAC comparison is constant-time (`Mac::verify_slice`); a malformed header is simply false.
pub fn verify<P: ParamList + ?Sized>(
    algorithm: Algorithm,
    keys: &[&[u8]],
    url: &str,
    params: &P,
    signature: &str,
) -> bool {
    let keys: Vec<Key> = keys.iter().map(|key| Key::new(key)).collect();
    matching_key(algorithm, &keys, url, params, signature).is_some()
}

/// Like [`verify`], with keys made ready once ([`Key`]), and says which of `keys` signed (its
/// index), so the same key can sign again (upstream mode re-signs for the upstream URL with the
/// token Twilio used).
pub fn matching_key<P: ParamList + ?Sized, K: AsRef<Key>>(
    algorithm: Algorithm,
    keys: &[K],
    url: &str,
    params: &P,
    signature: &str,
) -> Option<usize> {
    // A signature is 20 (SHA-1) or 32 (SHA-256) bytes; a header decoding to more than 48 bytes
    // matches nothing.
    let mut decoded = [0u8; 48];
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(signature, &mut decoded)
        .ok()?;
    let expected = &decoded[..len];
    let pairs = signed_pairs(params);
    // Stopping at the first match only tells a genuine sender which of its own keys matched; a
    // forger always pays for every candidate. Each comparison itself is constant-time.
    let matches = |candidate: &str| {
        keys.iter().position(|key| {
            Keyed::new(algorithm, key.as_ref(), candidate, &pairs).matches(expected)
        })
    };
    matches(url).or_else(|| toggle_default_port(url).and_then(|toggled| matches(&toggled)))
}

/// The other form of `url` that the SDKs accept: with the scheme's default port added when the URL
/// has no port, or with the port removed when it has one. `None` when the URL has no `scheme://`.
pub fn toggle_default_port(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let after = &rest[authority_len..];
    // The host starts after any userinfo; the port is what follows the last ':' outside IPv6 brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_colon = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => Some(i),
        _ => None,
    };
    let mut out = String::with_capacity(url.len() + 4);
    out.push_str(&url[..authority_start]);
    out.push_str(&authority[..host_start]);
    match port_colon {
        Some(i) => out.push_str(&host_port[..i]),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            out.push_str(host_port);
            out.push(':');
            out.push_str(default);
        }
    }
    out.push_str(after);
    Some(out)
}

/// Lowercase hex SHA-256 of a raw request body, as Twilio puts in the `bodySHA256` query parameter.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// Constant-time check that `body` hashes to the `bodySHA256` value Twilio sent.
pub fn body_matches(body: &[u8], body_sha256: &str) -> bool {
    let actual = body_sha256_hex(body);
    constant_time_eq(actual.as_bytes(), body_sha256.as_bytes())
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn base_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
    }

    #[test]
    fn docs_example_matches_twilio() {
        // Twilio's "Security" page worked example.
        let params = [
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+14158675310"),
            ("Caller", "+14158675310"),
            ("CallSid", "CA1234567890ABCDE"),
        ];
        let url = "https://example.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            format!("{url}{}", params_suffix(&params)),
            "https://example.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675310Digits1234From+14158675310To+18005551212"
        );
        assert_eq!(
            sign(Algorithm::HmacSha1, b"12345", url, &params),
            "L/OH5YylLD5NRKLltdqwSvS0BnU="
        );
    }

    #[test]
    fn repeated_values_are_sorted_and_counted_once() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            params_suffix(&params),
            "Digits1234Digits5678SidCA123SidAccountAC123"
        );
        assert_eq!(
            sign(Algorithm::HmacSha1, b"12345", URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn sorting_is_by_name_not_by_concatenation() {
        // twilio-go before 1.0 sorted "name+value" strings; the correct order sorts names.
        let mut params = base_params();
        params.push(("ReasonConferenceEnded", "test"));
        params.push(("Reason", "Participant"));
        assert!(verify(
            Algorithm::HmacSha1,
            &[b"12345"],
            URL,
            &params,
            "vOEb5UThFn24KEfnOFLQY2AE5FY="
        ));
        assert!(!verify(
            Algorithm::HmacSha1,
            &[b"12345"],
            URL,
            &params,
            "95+Bu0JVPi0r/SsESZCVf0dWAjw="
        ));
    }

    #[test]
    fn port_is_accepted_both_ways() {
        let p = base_params();
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(verify(Algorithm::HmacSha1, &[b"12345"], URL, &p, sig));
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert!(verify(Algorithm::HmacSha1, &[b"12345"], with_port, &p, sig));
        // Signed with :443, received without.
        assert!(verify(
            Algorithm::HmacSha1,
            &[b"12345"],
            URL,
            &p,
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
    }

    #[test]
    fn toggles_ports() {
        assert_eq!(
            toggle_default_port("https://a.example/x?y=1").as_deref(),
            Some("https://a.example:443/x?y=1")
        );
        assert_eq!(
            toggle_default_port("http://a.example").as_deref(),
            Some("http://a.example:80")
        );
        assert_eq!(
            toggle_default_port("HTTP://u:p@a.example:8080/x").as_deref(),
            Some("HTTP://u:p@a.example/x")
        );
        assert_eq!(
            toggle_default_port("https://[::1]/x").as_deref(),
            Some("https://[::1]:443/x")
        );
        assert_eq!(
            toggle_default_port("https://[::1]:8443/x").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(toggle_default_port("no-scheme"), None);
    }

    #[test]
    fn secondary_key_is_accepted() {
        let p = base_params();
        let sig = sign(Algorithm::HmacSha1, b"secondary", URL, &p);
        assert!(verify(
            Algorithm::HmacSha1,
            &[b"primary", b"secondary"],
            URL,
            &p,
            &sig
        ));
        assert!(!verify(Algorithm::HmacSha1, &[b"primary"], URL, &p, &sig));
    }

    #[test]
    fn sha256_signatures() {
        let p = base_params();
        assert_eq!(
            sign(Algorithm::HmacSha256, b"12345", URL, &p),
            "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s="
        );
        let sig = sign(Algorithm::HmacSha256, b"12345", URL, &p);
        assert!(verify(Algorithm::HmacSha256, &[b"12345"], URL, &p, &sig));
        assert!(!verify(Algorithm::HmacSha1, &[b"12345"], URL, &p, &sig));
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        let p = base_params();
        for bad in [
            "",
            "not base64!",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "RSOYDt4T1cUTdK1PDd93/VVr8B9=",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8==",
        ] {
            assert!(
                !verify(Algorithm::HmacSha1, &[b"12345"], URL, &p, bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_hash() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(body_sha256_hex(body), hash);
        assert!(body_matches(body, hash));
        assert!(!body_matches(b"{}", hash));
        assert!(!body_matches(body, &hash.to_uppercase()));
    }

    proptest::proptest! {
        #[test]
        fn pairs_are_signed_in_plain_byte_order(params in proptest::collection::vec(
            ("(SmsMessageSi|\\x00|To){0,3}[a-c\\x00]{0,2}", "[ab]{0,2}"), 0..12)) {
            // Names with long shared prefixes, prefixes of each other and NUL bytes: the prefix
            // shortcut must order exactly as a plain sort of the pairs does.
            let mut expected: Vec<(&str, &str)> =
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expected.sort_unstable();
            expected.dedup();
            let signed: Vec<(&str, &str)> =
                signed_pairs(&params).into_iter().map(|(_, k, v)| (k, v)).collect();
            proptest::prop_assert_eq!(signed, expected);
        }
    }
}
