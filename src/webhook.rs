//! Decoding a webhook request: the URL Twilio signed, and the parameters from the query, a form body
//! or a JSON body. Pure: works on the request's parts and the already-read body bytes.

use http::header::{AsHeaderName, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri};

/// The validated public base URL, without a trailing slash, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Validates `https://host[:port][/prefix]`; a trailing slash is dropped, a `#fragment` refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or("must start with http:// or https://")?;
        if scheme != "http" && scheme != "https" {
            return Err("must start with http:// or https://".into());
        }
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || host.contains('@') {
            return Err("needs a host and no user:password@".into());
        }
        if raw.contains('?') || raw.contains('#') {
            return Err(
                "must not carry a ?query or #fragment (connection overrides are not signed)".into(),
            );
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".into());
        }
        Ok(PublicUrl(raw.trim_end_matches('/').to_string()))
    }

    /// The base, to which the request's path and query are appended.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Request parameters as `(name, value)` pairs in arrival order; names may repeat.
///
/// Every name and value lives in one buffer: a webhook carries twenty-odd parameters, and a
/// `String` for each was the largest share of the allocations of a request.
#[derive(Clone, Default)]
pub struct Params {
    text: String,
    /// Where each pair's name and value are in `text`: `(name start, name end, value start, value end)`.
    spans: Vec<(usize, usize, usize, usize)>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one pair.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.spans
            .push((start, name_end, name_end, self.text.len()));
    }

    /// Every pair, in arrival order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        self.spans
            .iter()
            .map(|&(name, name_end, value, value_end)| {
                (&self.text[name..name_end], &self.text[value..value_end])
            })
    }

    /// The first value sent under `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        // Lengths first, bytes only on a length match: most of the twenty-odd names differ in length.
        let text = self.text.as_bytes();
        self.spans
            .iter()
            .find(|&&(start, end, _, _)| {
                end - start == name.len() && &text[start..end] == name.as_bytes()
            })
            .map(|&(_, _, value, value_end)| &self.text[value..value_end])
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The pairs as owned strings (what the journal stores).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut params = Params::new();
        for (k, v) in pairs {
            params.push(k.as_ref(), v.as_ref());
        }
        params
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Params {}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl crate::signature::ParamList for Params {
    fn each(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter()
    }
}

/// How the request carried its parameters, which decides what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `application/x-www-form-urlencoded` POST: the signature covers URL + sorted form parameters.
    Form(Params),
    /// GET (or an empty POST): the parameters are in the query, the signature covers the URL only.
    Query,
    /// `application/json` POST: the signature covers the URL, which carries `bodySHA256`.
    Json(bytes::Bytes),
}

/// A decoded webhook, not yet authenticated.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL Twilio signed: public base (or scheme + Host) + raw path and query.
    pub url: String,
    /// The body as the signature sees it.
    pub payload: Payload,
    /// Query parameters, as sent.
    pub query: Params,
}

/// Why a request is not a webhook we can take; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// 400: the body or URL cannot be decoded.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// 415: a body in a format Twilio does not send.
    #[error("unsupported content type")]
    UnsupportedMediaType,
}

/// Settings for rebuilding the signed URL.
#[derive(Debug, Clone, Copy)]
pub struct UrlRules<'a> {
    /// The configured public base URL, if any.
    pub public_url: Option<&'a PublicUrl>,
    /// `http` or `https`: how this listener was reached.
    pub scheme: &'static str,
    /// Whether X-Forwarded-Proto/Host may override scheme and host.
    pub trust_forwarded: bool,
}

/// Rebuilds the URL Twilio signed for this request. Never includes a `#fragment`.
pub fn signed_url(
    rules: UrlRules<'_>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<String, DecodeError> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(base) = rules.public_url {
        let mut url = String::with_capacity(base.as_str().len() + path_and_query.len());
        url.push_str(base.as_str());
        url.push_str(path_and_query);
        return Ok(url);
    }
    let forwarded = |name: &str| {
        rules
            .trust_forwarded
            .then(|| single_header(headers, name))
            .flatten()
            // A proxy chain appends; the first value is what the client used.
            .map(|v| v.split(',').next().unwrap_or("").trim())
    };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        Some(_) => return Err(DecodeError::Malformed("bad X-Forwarded-Proto")),
        None => rules.scheme,
    };
    let host = match forwarded("x-forwarded-host") {
        Some(h) => h,
        None => match uri.authority() {
            Some(a) => a.as_str(),
            None => single_header(headers, HOST).ok_or(DecodeError::Malformed("missing Host"))?,
        },
    };
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !host_ok {
        return Err(DecodeError::Malformed("bad Host"));
    }
    Ok(format!("{scheme}://{host}{path_and_query}"))
}

/// The value of a header that must appear at most once; `None` when absent, repeated or not text.
pub fn single_header<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    header_once(headers, name).ok()??.to_str().ok()
}

/// A header sent more than once where once is the most allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// A header that may appear at most once: `Ok(None)` when absent.
pub fn header_once<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&HeaderValue>, Repeated> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (_, Some(_)) => Err(Repeated),
    }
}

/// Parses `application/x-www-form-urlencoded` text, refusing bytes that decode to invalid UTF-8.
///
/// Reads as the WHATWG form parser (and so every Twilio SDK) does: `&` separates pairs (empty ones
/// are skipped), the first `=` separates name from value, `+` is a space, `%XX` a byte, and a `%`
/// not followed by two hex digits stays literal.
pub fn parse_form(raw: &[u8]) -> Result<Params, DecodeError> {
    if raw.is_empty() {
        // Most webhooks have no query string: nothing to allocate.
        return Ok(Params::new());
    }
    // Everything is decoded into one buffer with an ASCII byte after each part, so one UTF-8 check
    // covers every name and value: no multi-byte sequence can span two parts.
    let pairs = memchr::memchr_iter(b'&', raw).count() + 1;
    let mut decoded = Vec::with_capacity(raw.len() + 2 * pairs);
    let mut spans = Vec::with_capacity(pairs);
    let mut pair_start = 0;
    for pair_end in memchr::memchr_iter(b'&', raw).chain(std::iter::once(raw.len())) {
        let pair = &raw[pair_start..pair_end];
        pair_start = pair_end + 1;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name_start = decoded.len();
        form_decode_into(&mut decoded, name);
        let name_end = decoded.len();
        decoded.push(b'&');
        form_decode_into(&mut decoded, value);
        spans.push((name_start, name_end, name_end + 1, decoded.len()));
        decoded.push(b'&');
    }
    let text = String::from_utf8(decoded).map_err(|_| DecodeError::Malformed("invalid UTF-8"))?;
    Ok(Params { text, spans })
}

/// Appends one form-encoded name or value, decoded, to `out`.
///
/// Works in runs between `%` signs: each run is copied with `+` turned into a space (a loop the
/// compiler vectorises), then one escape is decoded. Names and values are short, so a plain scan
/// finds the next `%` sooner than setting up a vectorised search would.
fn form_decode_into(out: &mut Vec<u8>, raw: &[u8]) {
    out.reserve(raw.len());
    let mut rest = raw;
    loop {
        let run = rest.iter().position(|&b| b == b'%').unwrap_or(rest.len());
        out.extend(
            rest[..run]
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b }),
        );
        rest = match &rest[run..] {
            [] => return,
            [b'%', high, low, tail @ ..] => match hex_value(*high).zip(hex_value(*low)) {
                Some((high, low)) => {
                    out.push(high << 4 | low);
                    tail
                }
                None => {
                    out.push(b'%');
                    &rest[run + 1..]
                }
            },
            [_, tail @ ..] => {
                out.push(b'%');
                tail
            }
        };
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes a request whose body has been read in full.
pub fn decode(
    rules: UrlRules<'_>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<Webhook, DecodeError> {
    let url = signed_url(rules, uri, headers)?;
    let query = parse_form(uri.query().unwrap_or("").as_bytes())?;
    let content_type = match header_once(headers, CONTENT_TYPE) {
        Ok(None) => None,
        Ok(Some(value)) => Some(
            value
                .to_str()
                .map_err(|_| DecodeError::UnsupportedMediaType)?,
        ),
        Err(Repeated) => return Err(DecodeError::Malformed("repeated Content-Type")),
    };
    let media_type = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim());
    let is = |expected: &str| media_type.is_some_and(|m| m.eq_ignore_ascii_case(expected));
    let charset_ok = content_type.is_none_or(|ct| {
        ct.split(';').skip(1).all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
    });
    if !charset_ok {
        return Err(DecodeError::UnsupportedMediaType);
    }
    let payload = if *method == Method::GET {
        if !body.is_empty() {
            return Err(DecodeError::Malformed("GET with a body"));
        }
        Payload::Query
    } else {
        if is("application/x-www-form-urlencoded") {
            Payload::Form(parse_form(&body)?)
        } else if is("application/json") {
            Payload::Json(body)
        } else if media_type.is_none() && body.is_empty() {
            Payload::Query
        } else {
            return Err(DecodeError::UnsupportedMediaType);
        }
    };
    Ok(Webhook {
        url,
        payload,
        query,
    })
}

impl Webhook {
    /// The value of a parameter Twilio sent, from the form body first, then the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        match &self.payload {
            Payload::Form(p) => p.get(name),
            _ => None,
        }
        .or_else(|| self.query.get(name))
    }

    /// Everything a template may see: form (or JSON) parameters first, then query parameters.
    /// JSON bodies contribute their top-level scalar fields; call only after authentication.
    pub fn into_params(self) -> Result<Params, DecodeError> {
        let mut params = match self.payload {
            Payload::Form(p) => p,
            Payload::Query => Params::new(),
            Payload::Json(body) => json_params(&body)?,
        };
        for (k, v) in self.query.iter().filter(|(k, _)| *k != "bodySHA256") {
            params.push(k, v);
        }
        Ok(params)
    }
}

fn json_params(body: &[u8]) -> Result<Params, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| DecodeError::Malformed("invalid JSON"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(DecodeError::Malformed("JSON body is not an object"));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(public: Option<&PublicUrl>, trust: bool) -> UrlRules<'_> {
        UrlRules {
            public_url: public,
            scheme: "http",
            trust_forwarded: trust,
        }
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn url_from_public_base_keeps_raw_query() {
        let base = PublicUrl::parse("https://voice.example.com/twilio").unwrap();
        let uri: Uri = "/voice?a=It%27s+ok&b=%2B1".parse().unwrap();
        let url = signed_url(rules(Some(&base), false), &uri, &HeaderMap::new()).unwrap();
        assert_eq!(
            url,
            "https://voice.example.com/twilio/voice?a=It%27s+ok&b=%2B1"
        );
    }

    #[test]
    fn url_from_host_and_forwarded_headers() {
        let uri: Uri = "/sms".parse().unwrap();
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "sms.example.com"),
        ]);
        assert_eq!(
            signed_url(rules(None, false), &uri, &h).unwrap(),
            "http://internal:8080/sms"
        );
        assert_eq!(
            signed_url(rules(None, true), &uri, &h).unwrap(),
            "https://sms.example.com/sms"
        );
        assert!(signed_url(rules(None, false), &uri, &HeaderMap::new()).is_err());
        let bad = headers(&[("host", "a b")]);
        assert!(signed_url(rules(None, false), &uri, &bad).is_err());
        let twice = headers(&[("host", "a"), ("host", "b")]);
        assert!(signed_url(rules(None, false), &uri, &twice).is_err());
    }

    #[test]
    fn forms_decode_plus_and_percent() {
        let p = parse_form(b"Body=a+b%2Bc%20d&Empty=&Emoji=%F0%9F%98%80&Body=2").unwrap();
        assert_eq!(
            p.to_pairs(),
            [
                ("Body".to_string(), "a b+c d".to_string()),
                ("Empty".into(), "".into()),
                ("Emoji".into(), "😀".into()),
                ("Body".into(), "2".into())
            ]
        );
        assert_eq!(
            parse_form(b"Body=%FF"),
            Err(DecodeError::Malformed("invalid UTF-8"))
        );
        // Invalid percent escapes pass through literally, as in every SDK's form parser.
        assert_eq!(parse_form(b"a=%zz").unwrap().get("a"), Some("%zz"));
        // Pairs without `=` and empty pairs, as WHATWG reads them.
        let p = parse_form(b"&a&&=&b=1=2&").unwrap();
        assert_eq!(p, [("a", ""), ("", ""), ("b", "1=2")].into_iter().collect());
        assert_eq!(p.len(), 3);
        assert!(parse_form(b"").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn forms_decode_as_the_whatwg_parser_does(raw in proptest::collection::vec(
            proptest::sample::select(b"ab=&+%2F0zA\xc3\xa9\xff".to_vec()), 0..40)) {
            // The reference: form_urlencoded (through serde_urlencoded), which replaces invalid
            // UTF-8 silently where parse_form refuses it.
            let reference: Vec<(String, String)> = serde_urlencoded::from_bytes(&raw).unwrap();
            let decoded_is_utf8 = raw
                .split(|&b| b == b'&')
                .flat_map(|p| p.splitn(2, |&b| b == b'='))
                .all(|part| {
                    let spaced: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
                    percent_encoding::percent_decode(&spaced).decode_utf8().is_ok()
                });
            match parse_form(&raw) {
                Ok(params) => {
                    proptest::prop_assert!(decoded_is_utf8);
                    proptest::prop_assert_eq!(params.to_pairs(), reference);
                }
                Err(e) => {
                    proptest::prop_assert!(!decoded_is_utf8);
                    proptest::prop_assert_eq!(e, DecodeError::Malformed("invalid UTF-8"));
                }
            }
        }
    }

    #[test]
    fn content_types() {
        let uri: Uri = "/voice".parse().unwrap();
        let h = headers(&[
            ("host", "x"),
            (
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            ),
        ]);
        let w = decode(rules(None, false), &Method::POST, &uri, &h, "A=1".into()).unwrap();
        assert_eq!(w.param("A"), Some("1"));
        let h = headers(&[("host", "x"), ("content-type", "text/plain")]);
        assert_eq!(
            decode(rules(None, false), &Method::POST, &uri, &h, "A=1".into()).unwrap_err(),
            DecodeError::UnsupportedMediaType
        );
        let h = headers(&[
            ("host", "x"),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=latin1",
            ),
        ]);
        assert!(decode(rules(None, false), &Method::POST, &uri, &h, "A=1".into()).is_err());
        let h = headers(&[("host", "x")]);
        assert_eq!(
            decode(rules(None, false), &Method::POST, &uri, &h, "".into())
                .unwrap()
                .payload,
            Payload::Query
        );
    }

    #[test]
    fn json_fields_become_params_after_auth() {
        let uri: Uri = "/voice?bodySHA256=abc&x=1".parse().unwrap();
        let h = headers(&[("host", "x"), ("content-type", "application/json")]);
        let w = decode(
            rules(None, false),
            &Method::POST,
            &uri,
            &h,
            r#"{"CallSid":"CA1","n":2,"o":{}}"#.into(),
        )
        .unwrap();
        let p = w.into_params().unwrap();
        assert_eq!(
            p.to_pairs(),
            [
                ("CallSid".to_string(), "CA1".to_string()),
                ("n".into(), "2".into()),
                ("x".into(), "1".into())
            ]
        );
    }
}
