//! The upstream's copy of a webhook: the same method, body and query Twilio sent, to the upstream
//! base URL + the request's path and query, signed for that URL (or with Twilio's signature passed
//! through), with `X-Forwarded-*` and without hop-by-hop headers. Pure.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::Method;

use super::SignatureMode;
use crate::net;
use crate::signature;
use crate::verify::{Signer, SIGNATURE_HEADER};
use crate::webhook::Params;

/// What the upstream's copy is made from: the request as received, once verified.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// Twilio's method.
    pub method: &'a Method,
    /// The raw path and query, as received.
    pub path_and_query: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw body, as received.
    pub body: Bytes,
    /// The URL Twilio signed (public base + path and query).
    pub signed_url: &'a str,
    /// The form parameters the signature covers; `None` for GET and JSON (URL only).
    pub form: Option<&'a Params>,
    /// Who connected to us.
    pub peer: Option<IpAddr>,
}

impl Incoming<'_> {
    /// The request's path, without its query: what the path patterns are matched against.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(path, _)| path)
    }
}

/// Headers a proxy never passes on (RFC 9110 §7.6.1), plus those this copy sets itself.
const DROPPED: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The upstream URL for a request: `base` (no trailing `/`) + the raw path and query.
pub fn upstream_url(base: &str, path_and_query: &str) -> String {
    let mut url = String::with_capacity(base.len() + path_and_query.len());
    url.push_str(base);
    url.push_str(path_and_query);
    url
}

/// Builds the upstream's copy. `signer` is the key Twilio's signature matched.
pub fn build(
    base: &str,
    mode: SignatureMode,
    signer: Signer<'_>,
    incoming: &Incoming<'_>,
) -> net::Request {
    let url = upstream_url(base, incoming.path_and_query);
    let named_by_connection: Vec<String> = incoming
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut headers: Vec<(HeaderName, String)> = Vec::with_capacity(incoming.headers.len() + 4);
    let mut forwarded_for = None;
    for (name, value) in incoming.headers {
        let key = name.as_str();
        if DROPPED.contains(&key) || named_by_connection.iter().any(|n| n == key) {
            continue;
        }
        // UTF-8, not only visible ASCII: a cookie the app set with UTF-8 in it must come back to
        // it as Twilio sends it.
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        if key == "x-forwarded-for" {
            forwarded_for = Some(value.to_string());
        } else if key == SIGNATURE_HEADER && mode == SignatureMode::Resign {
            // Replaced below.
        } else {
            headers.push((name.clone(), value.to_string()));
        }
    }
    if mode == SignatureMode::Resign {
        let no_params = Params::new();
        let params = incoming.form.unwrap_or(&no_params);
        let signed = signature::sign(signer.algorithm, signer.key, &url, params);
        headers.push((HeaderName::from_static(SIGNATURE_HEADER), signed));
    }
    // A proxy chain appends the address it saw.
    if let Some(peer) = incoming.peer {
        forwarded_for = Some(match forwarded_for {
            Some(before) => format!("{before}, {peer}"),
            None => peer.to_string(),
        });
    }
    if let Some(value) = forwarded_for {
        headers.push((HeaderName::from_static("x-forwarded-for"), value));
    }
    // What Twilio connected to: the scheme and host of the URL it signed.
    if let Some((scheme, rest)) = incoming.signed_url.split_once("://") {
        let host = rest.split(['/', '?']).next().unwrap_or(rest);
        headers.push((
            HeaderName::from_static("x-forwarded-proto"),
            scheme.to_string(),
        ));
        headers.push((
            HeaderName::from_static("x-forwarded-host"),
            host.to_string(),
        ));
    }
    net::Request {
        method: incoming.method.clone(),
        url,
        headers,
        body: incoming.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Algorithm;

    const SIGNED: &str = "https://voice.example.com/voice?lang=en";
    const SIGNER: Signer<'static> = Signer {
        algorithm: Algorithm::HmacSha1,
        key: b"tok",
    };

    fn incoming<'a>(headers: &'a HeaderMap, form: &'a Params) -> Incoming<'a> {
        Incoming {
            method: &Method::POST,
            path_and_query: "/voice?lang=en",
            headers,
            body: Bytes::from_static(b"CallSid=CA1&From=%2B15550100"),
            signed_url: SIGNED,
            form: Some(form),
            peer: Some("10.0.0.7".parse().unwrap()),
        }
    }

    fn header<'a>(req: &'a net::Request, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn twilio_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-twilio-signature", "twilios-own".parse().unwrap());
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h.insert("i-twilio-idempotency-token", "tok-1".parse().unwrap());
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("host", "voice.example.com".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert(
            "cookie",
            http::HeaderValue::from_bytes("step=2; name=Zoë".as_bytes()).unwrap(),
        );
        h
    }

    #[test]
    fn resigned_for_the_upstream_url_with_the_key_twilio_used() {
        let form: Params = [("CallSid", "CA1"), ("From", "+15550100")]
            .into_iter()
            .collect();
        let headers = twilio_headers();
        let req = build(
            "http://app.internal:8080/twilio",
            SignatureMode::Resign,
            SIGNER,
            &incoming(&headers, &form),
        );
        assert_eq!(req.url, "http://app.internal:8080/twilio/voice?lang=en");
        assert_eq!(req.method, Method::POST);
        assert_eq!(&req.body[..], b"CallSid=CA1&From=%2B15550100");
        let sig = header(&req, "x-twilio-signature").unwrap();
        assert!(signature::verify(
            Algorithm::HmacSha1,
            &[b"tok"],
            &req.url,
            &form,
            sig
        ));
        assert_eq!(
            req.headers
                .iter()
                .filter(|(n, _)| n == "x-twilio-signature")
                .count(),
            1
        );
        assert_eq!(header(&req, "i-twilio-idempotency-token"), Some("tok-1"));
        assert_eq!(header(&req, "cookie"), Some("step=2; name=Zoë"));
        assert_eq!(
            header(&req, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            header(&req, "x-forwarded-for"),
            Some("203.0.113.9, 10.0.0.7")
        );
        assert_eq!(header(&req, "x-forwarded-proto"), Some("https"));
        assert_eq!(header(&req, "x-forwarded-host"), Some("voice.example.com"));
        for hop in ["connection", "x-secret-hop", "transfer-encoding", "host"] {
            assert_eq!(header(&req, hop), None, "{hop}");
        }
    }

    #[test]
    fn passed_through_unchanged() {
        let form = Params::new();
        let headers = twilio_headers();
        let req = build(
            "https://app",
            SignatureMode::Pass,
            SIGNER,
            &incoming(&headers, &form),
        );
        assert_eq!(header(&req, "x-twilio-signature"), Some("twilios-own"));
    }
}
