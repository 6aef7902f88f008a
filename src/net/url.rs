//! Outgoing absolute URLs (the drill, the forwarder, the Twilio REST API): splitting into scheme,
//! host, port and target, and RFC 3986 relative resolution (how Twilio turns `action="menu"` into an
//! absolute URL). Pure.

/// A parsed absolute `http`/`https` URL without fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as Twilio requests and signs it (no fragment).
    pub url: String,
    /// True for https.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, the scheme's default when absent.
    pub port: u16,
    /// `host[:port]` exactly as written, for the Host header.
    pub authority: String,
    /// Path and query for the request line (`/` when empty).
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute http(s) URL; any fragment must already be removed.
    pub fn parse(url: &str) -> Result<Target, String> {
        let parts = Parts::split(url);
        let scheme = parts.scheme.map(str::to_ascii_lowercase);
        let tls = match scheme.as_deref() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url}: not an http:// or https:// URL")),
        };
        if parts.fragment.is_some() {
            return Err(format!("{url}: has a #fragment"));
        }
        let authority = parts
            .authority
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("{url}: no host"))?;
        if authority.contains('@') {
            return Err(format!("{url}: credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                let port = if p.is_empty() {
                    None
                } else {
                    Some(
                        p.parse::<u16>()
                            .map_err(|_| format!("{url}: bad port {p:?}"))?,
                    )
                };
                (h, port)
            }
            _ => (authority, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let mut path_and_query = if parts.path.is_empty() {
            "/".to_string()
        } else {
            parts.path.to_string()
        };
        if let Some(q) = parts.query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Target {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// The absolute URL of `path_and_query` on this target's origin, as the HTTP client takes it.
    pub fn with_path(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.authority)
    }

    /// True when `other` is on the same scheme, host and port.
    pub fn same_origin(&self, other: &Target) -> bool {
        self.tls == other.tls
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }
}

/// The five components of RFC 3986 appendix B.
#[derive(Debug, Default)]
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn split(mut s: &'a str) -> Parts<'a> {
        let mut p = Parts::default();
        if let Some((rest, fragment)) = s.split_once('#') {
            p.fragment = Some(fragment);
            s = rest;
        }
        if let Some((rest, query)) = s.split_once('?') {
            p.query = Some(query);
            s = rest;
        }
        if let Some(colon) = s.find(':') {
            let scheme = &s[..colon];
            let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if valid && !scheme.contains('/') {
                p.scheme = Some(scheme);
                s = &s[colon + 1..];
            }
        }
        if let Some(rest) = s.strip_prefix("//") {
            let end = rest.find('/').unwrap_or(rest.len());
            p.authority = Some(&rest[..end]);
            s = &rest[end..];
        }
        p.path = s;
        p
    }
}

fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".into();
        } else if input.starts_with("/../") || input == "/.." {
            if input == "/.." {
                input = "/".into();
            } else {
                input.replace_range(..4, "/");
            }
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
}

fn merge(base: &Parts<'_>, reference_path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{reference_path}");
    }
    match base.path.rfind('/') {
        Some(i) => format!("{}{}", &base.path[..=i], reference_path),
        None => reference_path.to_string(),
    }
}

/// Resolves `reference` against `base` as RFC 3986 section 5.2 does (strict parser). The result
/// keeps the reference's fragment, which may hold connection overrides.
pub fn resolve(base: &str, reference: &str) -> String {
    let b = Parts::split(base);
    let r = Parts::split(reference.trim());
    let (scheme, authority, path, query);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = b.scheme;
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = b.authority;
            if r.path.is_empty() {
                path = b.path.to_string();
                query = r.query.or(b.query);
            } else {
                path = if r.path.starts_with('/') {
                    remove_dot_segments(r.path)
                } else {
                    remove_dot_segments(&merge(&b, r.path))
                };
                query = r.query;
            }
        }
    }
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = r.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3986_normal_and_abnormal_examples() {
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("http:g", "http:g"),
        ] {
            assert_eq!(resolve(base, reference), expected, "{reference:?}");
        }
    }

    #[test]
    fn twiml_relative_actions() {
        assert_eq!(
            resolve("https://voice.example.com/voice", "menu"),
            "https://voice.example.com/menu"
        );
        assert_eq!(
            resolve("http://127.0.0.1:8080/ivr/voice?x=1", "menu#rt=2000"),
            "http://127.0.0.1:8080/ivr/menu#rt=2000"
        );
        assert_eq!(resolve("http://h:1", "menu"), "http://h:1/menu");
    }

    #[test]
    fn targets() {
        let t = Target::parse("https://Voice.example.com/voice?a=1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path_and_query.as_str()),
            (true, "Voice.example.com", 443, "/voice?a=1")
        );
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(t.path_and_query, "/");
        assert!(Target::parse("ftp://a/b").is_err());
        assert!(Target::parse("http://a/b#ct=1").is_err());
        assert!(Target::parse("http:///b").is_err());
        assert!(Target::parse("http://a:99999/").is_err());
        let a = Target::parse("http://h:80/x").unwrap();
        assert!(a.same_origin(&Target::parse("http://H/y").unwrap()));
        assert!(!a.same_origin(&Target::parse("https://h/y").unwrap()));
    }
}
