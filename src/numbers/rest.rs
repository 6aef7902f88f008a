//! The Twilio REST client for the resources `numbers` reads and writes: credentials from the
//! environment, paginated reads, form-encoded updates, a bounded request rate, `429` +
//! `Retry-After`, and errors worded from Twilio's error body. I/O, over [`crate::net`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::model::{Account, Application, Number, Service, ServiceNumber};
use super::plan::Kind;
use crate::net;
use crate::net::url::Target;

/// Twilio's core API (numbers, Apps).
pub const API_BASE: &str = "https://api.twilio.com";
/// Twilio's Messaging API (Services).
pub const MESSAGING_BASE: &str = "https://messaging.twilio.com";
/// Items asked for per page.
pub const PAGE_SIZE: u32 = 100;
/// Pages followed per list at most (a million items at [`PAGE_SIZE`]).
pub const MAX_PAGES: usize = 10_000;
/// `429` answers retried per request before it fails.
pub const MAX_RETRIES: u32 = 5;
/// The longest `Retry-After` honoured; a longer one fails the request.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Who the requests authenticate as. Never printed in full.
#[derive(Clone)]
pub struct Credentials {
    /// The account the credentials belong to (`AC…`).
    pub account_sid: String,
    username: String,
    password: String,
    kind: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn is_sid(prefix: &str, s: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Credentials {
    /// From `TWILIO_ACCOUNT_SID` and `TWILIO_API_KEY` + `TWILIO_API_SECRET` (preferred: an API
    /// key can be revoked) or `TWILIO_AUTH_TOKEN`; `env` reads a variable.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Credentials, String> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let account_sid = get("TWILIO_ACCOUNT_SID")
            .ok_or("TWILIO_ACCOUNT_SID: not set (the account's AC… sid)")?;
        if !is_sid("AC", &account_sid) {
            return Err("TWILIO_ACCOUNT_SID: expected AC followed by 32 hex digits".into());
        }
        match (get("TWILIO_API_KEY"), get("TWILIO_API_SECRET")) {
            (Some(key), Some(secret)) => Ok(Credentials {
                account_sid,
                username: key,
                password: secret,
                kind: "API key secret",
            }),
            (Some(_), None) | (None, Some(_)) => {
                Err("TWILIO_API_KEY/TWILIO_API_SECRET: set both, or neither".into())
            }
            (None, None) => match get("TWILIO_AUTH_TOKEN") {
                Some(token) => Ok(Credentials {
                    username: account_sid.clone(),
                    account_sid,
                    password: token,
                    kind: "auth token",
                }),
                None => Err(
                    "no credentials: set TWILIO_API_KEY and TWILIO_API_SECRET, or \
                             TWILIO_AUTH_TOKEN, in the environment"
                        .into(),
                ),
            },
        }
    }

    fn header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The Authorization header as printed by `--dry-run`.
    pub fn redacted(&self) -> String {
        format!("Basic <redacted: {} + {}>", self.username, self.kind)
    }
}

/// Checks an API base override: only loopback, so credentials never go to a stranger.
pub fn loopback_base(text: &str) -> Result<String, String> {
    let text = text.trim_end_matches('/');
    let t = Target::parse(text).map_err(|e| format!("api-base: {e}"))?;
    let loopback = t.host.eq_ignore_ascii_case("localhost")
        || t.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback || t.path_and_query != "/" {
        return Err(format!(
            "api-base: {text}: only a loopback base without a path (http://127.0.0.1:PORT) may replace \
             Twilio's API, for tests"
        ));
    }
    Ok(text.to_string())
}

/// Why a request failed, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// HTTP 401.
    #[error("{what}: HTTP 401{detail}: Twilio refused the credentials ({who}); check TWILIO_ACCOUNT_SID and TWILIO_API_KEY/TWILIO_API_SECRET or TWILIO_AUTH_TOKEN")]
    Unauthorized {
        /// The request.
        what: String,
        /// Twilio's code and message.
        detail: String,
        /// Which credentials.
        who: String,
    },
    /// HTTP 403.
    #[error("{what}: HTTP 403{detail}: these credentials may not do this (a restricted API key, or another account's resource)")]
    Forbidden {
        /// The request.
        what: String,
        /// Twilio's code and message.
        detail: String,
    },
    /// HTTP 404.
    #[error("{what}: HTTP 404{detail}: no such resource in this account (deleted meanwhile, or another account's)")]
    NotFound {
        /// The request.
        what: String,
        /// Twilio's code and message.
        detail: String,
    },
    /// Still 429 after the retries.
    #[error("{what}: HTTP 429{detail}: still rate-limited after {retries} waits")]
    RateLimited {
        /// The request.
        what: String,
        /// Twilio's code and message.
        detail: String,
        /// Waits done.
        retries: u32,
    },
    /// Any other non-2xx answer.
    #[error("{what}: HTTP {status}{detail}")]
    Status {
        /// The request.
        what: String,
        /// The status.
        status: u16,
        /// Twilio's code and message.
        detail: String,
    },
    /// No answer (DNS, connect, TLS, timeout, a broken connection).
    #[error("{what}: cannot reach the API: {cause}")]
    Network {
        /// The request.
        what: String,
        /// Why.
        cause: String,
    },
    /// A 2xx answer that is not the JSON expected.
    #[error("{what}: unexpected answer: {cause}")]
    BadAnswer {
        /// The request.
        what: String,
        /// Why.
        cause: String,
    },
}

/// Twilio's error body: `code`, `message`, `more_info`, `status`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
    more_info: Option<String>,
}

fn error_detail(body: &[u8]) -> String {
    let Ok(e) = serde_json::from_slice::<ErrorBody>(body) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(m) = e.message.filter(|m| !m.is_empty()) {
        match e.code {
            Some(c) => out.push_str(&format!(" (Twilio error {c}: {m}")),
            None => out.push_str(&format!(" ({m}")),
        }
        if let Some(more) = e.more_info.filter(|m| !m.is_empty()) {
            out.push_str(&format!("; {more}"));
        }
        out.push(')');
    }
    out
}

/// Seconds in `Retry-After` (Twilio sends whole seconds); 1 s when absent or unreadable.
fn retry_after(v: Option<&str>) -> Duration {
    v.and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
}

/// One page of a list: its items and the next page's URL (on the client's own base), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the API's order.
    pub items: Vec<T>,
    /// Where the next page is; `None` on the last.
    pub next: Option<String>,
}

/// A list the account's wiring is read from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum List {
    /// `IncomingPhoneNumbers.json`.
    Numbers,
    /// `Applications.json` (TwiML Apps).
    Applications,
    /// Messaging `Services`.
    Services,
    /// The numbers in one Messaging Service (`MG…`).
    ServiceNumbers(String),
}

impl List {
    /// The key of the JSON list holding the items.
    pub fn key(&self) -> &'static str {
        match self {
            List::Numbers => "incoming_phone_numbers",
            List::Applications => "applications",
            List::Services => "services",
            List::ServiceNumbers(_) => "phone_numbers",
        }
    }
}

/// Requests a client made, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 429 (each one, retried or not).
    pub throttled: u64,
    /// No answer, or another status.
    pub failed: u64,
}

impl Stats {
    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.ok + self.throttled + self.failed
    }
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
}

/// The client; one per command run.
#[derive(Debug)]
pub struct Api {
    http: net::Client,
    credentials: Credentials,
    /// The account whose resources are read and written: the credentials' own. A subaccount is
    /// wired with its own credentials, because Twilio's Messaging API takes no others (a parent's
    /// credentials reach only a subaccount's 2010-04-01 resources).
    pub account: String,
    api_base: String,
    messaging_base: String,
    min_interval: Duration,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    counts: Counts,
}

/// How the client is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Who.
    pub credentials: Credentials,
    /// A loopback base replacing both Twilio hosts (tests).
    pub api_base: Option<String>,
    /// Requests per second at most.
    pub rate: f64,
}

impl Api {
    /// A client for `setup`.
    pub fn new(setup: Setup) -> Result<Api, String> {
        let account = setup.credentials.account_sid.clone();
        if !(setup.rate > 0.0 && setup.rate <= 100.0) {
            return Err(format!(
                "rate: {} is not within (0, 100] requests per second",
                setup.rate
            ));
        }
        let (api_base, messaging_base) = match setup.api_base {
            Some(b) => {
                let b = loopback_base(&b)?;
                (b.clone(), b)
            }
            None => (API_BASE.to_string(), MESSAGING_BASE.to_string()),
        };
        Ok(Api {
            http: net::Client::new(net::Settings {
                connect_timeout: Duration::from_secs(10),
                read_timeout: None,
                request_timeout: Duration::from_secs(30),
                max_body_bytes: 8 * 1024 * 1024,
                max_idle_per_host: 2,
            }),
            credentials: setup.credentials,
            account,
            api_base,
            messaging_base,
            min_interval: Duration::from_secs_f64(1.0 / setup.rate),
            last: tokio::sync::Mutex::new(None),
            counts: Counts::default(),
        })
    }

    /// The requests made so far.
    pub fn stats(&self) -> Stats {
        Stats {
            ok: self.counts.ok.load(Ordering::Relaxed),
            throttled: self.counts.throttled.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }

    /// The credentials in use, for `--dry-run`.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The URL of one resource, for updates and `--dry-run`.
    pub fn resource_url(&self, kind: Kind, sid: &str) -> String {
        match kind {
            Kind::Number => format!(
                "{}/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json",
                self.api_base, self.account
            ),
            Kind::Application => format!(
                "{}/2010-04-01/Accounts/{}/Applications/{sid}.json",
                self.api_base, self.account
            ),
            Kind::Service => format!("{}/v1/Services/{sid}", self.messaging_base),
        }
    }

    /// Waits so that requests start at most `rate` per second.
    async fn pace(&self) {
        let mut last = self.last.lock().await;
        if let Some(t) = *last {
            tokio::time::sleep_until(t + self.min_interval).await;
        }
        *last = Some(tokio::time::Instant::now());
    }

    /// One request, with the `429` waits; the answer body on 2xx.
    // Long on purpose: the request, its 429 waits and each error's wording in the order they happen.
    async fn call(
        &self,
        method: http::Method,
        url: &str,
        form: Option<String>,
    ) -> Result<Bytes, ApiError> {
        let what = format!("{method} {url}");
        let mut headers = vec![
            (http::header::AUTHORIZATION, self.credentials.header()),
            (http::header::ACCEPT, "application/json".to_string()),
            (
                http::header::USER_AGENT,
                concat!("twiml-failover/", env!("CARGO_PKG_VERSION"), " (numbers)").to_string(),
            ),
        ];
        if form.is_some() {
            headers.push((
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded".to_string(),
            ));
        }
        let body = Bytes::from(form.unwrap_or_default());
        let mut retries = 0;
        loop {
            self.pace().await;
            let answer = self
                .http
                .send(net::Request {
                    method: method.clone(),
                    url: url.to_string(),
                    headers: headers.clone(),
                    body: body.clone(),
                })
                .await
                .map_err(|e| {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    ApiError::Network {
                        what: what.clone(),
                        cause: e.to_string(),
                    }
                })?;
            let counter = match answer.status {
                200..=299 => &self.counts.ok,
                429 => &self.counts.throttled,
                _ => &self.counts.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let detail = || error_detail(&answer.body);
            match answer.status {
                200..=299 => return Ok(answer.body),
                429 => {
                    let wait = retry_after(answer.header("retry-after"));
                    if retries >= MAX_RETRIES || wait > MAX_RETRY_AFTER {
                        return Err(ApiError::RateLimited {
                            what,
                            detail: detail(),
                            retries,
                        });
                    }
                    retries += 1;
                    tokio::time::sleep(wait).await;
                }
                401 => {
                    return Err(ApiError::Unauthorized {
                        what,
                        detail: detail(),
                        who: format!(
                            "{} for {}",
                            self.credentials.kind, self.credentials.username
                        ),
                    })
                }
                403 => {
                    return Err(ApiError::Forbidden {
                        what,
                        detail: detail(),
                    })
                }
                404 => {
                    return Err(ApiError::NotFound {
                        what,
                        detail: detail(),
                    })
                }
                status => {
                    return Err(ApiError::Status {
                        what,
                        status,
                        detail: detail(),
                    })
                }
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ApiError> {
        let body = self.call(http::Method::GET, url, None).await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::BadAnswer {
            what: format!("GET {url}"),
            cause: e.to_string(),
        })
    }

    /// Follows a next-page reference on our own base only: the path and query are kept, the host
    /// is always the one the first page came from, so credentials go nowhere else.
    fn next(&self, base: &str, reference: &str) -> Result<String, ApiError> {
        let path = if reference.starts_with('/') {
            reference.to_string()
        } else {
            Target::parse(reference)
                .map_err(|e| ApiError::BadAnswer {
                    what: "next page".into(),
                    cause: e,
                })?
                .path_and_query
        };
        Ok(format!("{base}{path}"))
    }

    /// The URL of `list`'s first page, `page_size` items per page.
    pub fn first_page(&self, list: &List, page_size: u32) -> String {
        match list {
            List::Numbers => format!(
                "{}/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json?PageSize={page_size}",
                self.api_base, self.account
            ),
            List::Applications => format!(
                "{}/2010-04-01/Accounts/{}/Applications.json?PageSize={page_size}",
                self.api_base, self.account
            ),
            List::Services => format!("{}/v1/Services?PageSize={page_size}", self.messaging_base),
            List::ServiceNumbers(mg) => format!(
                "{}/v1/Services/{mg}/PhoneNumbers?PageSize={page_size}",
                self.messaging_base
            ),
        }
    }

    /// One page of `list` at `url`: the 2010-04-01 API pages with `next_page_uri`, messaging v1
    /// with `meta.next_page_url`.
    pub async fn page<T: DeserializeOwned>(
        &self,
        list: &List,
        url: &str,
    ) -> Result<Page<T>, ApiError> {
        let mut page: serde_json::Map<String, serde_json::Value> = self.get_json(url).await?;
        let bad = |cause: String| ApiError::BadAnswer {
            what: format!("GET {url}"),
            cause,
        };
        let key = list.key();
        let items = page
            .remove(key)
            .ok_or_else(|| bad(format!("no `{key}` list")))?;
        let items = serde_json::from_value::<Vec<T>>(items).map_err(|e| bad(e.to_string()))?;
        let next = page
            .get("next_page_uri")
            .or_else(|| page.get("meta").and_then(|m| m.get("next_page_url")))
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty());
        let base = match list {
            List::Numbers | List::Applications => &self.api_base,
            List::Services | List::ServiceNumbers(_) => &self.messaging_base,
        };
        let next = match next {
            Some(n) => Some(self.next(base, n)?),
            None => None,
        };
        Ok(Page { items, next })
    }

    /// Every item of a list from `url` on; a list without end is refused.
    async fn list<T: DeserializeOwned>(
        &self,
        list: &List,
        url: String,
    ) -> Result<Vec<T>, ApiError> {
        let mut url = url;
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let page = self.page(list, &url).await?;
            out.extend(page.items);
            let Some(next) = page.next else {
                return Ok(out);
            };
            // A page that points at itself, or a list without end, is refused rather than
            // followed for ever.
            pages += 1;
            if next == url || pages >= MAX_PAGES {
                return Err(ApiError::BadAnswer {
                    what: format!("GET {url}"),
                    cause: format!("pagination does not end (page {pages} points to {next})"),
                });
            }
            url = next;
        }
    }

    /// Reads the numbers (all, or the one `phone_number`), every TwiML App, every Messaging
    /// Service and the numbers in each.
    pub async fn fetch(&self, phone_number: Option<&str>) -> Result<Account, ApiError> {
        let mut numbers_url = self.first_page(&List::Numbers, PAGE_SIZE);
        if let Some(p) = phone_number {
            numbers_url.push('&');
            numbers_url
                .push_str(&serde_urlencoded::to_string([("PhoneNumber", p)]).unwrap_or_default());
        }
        let numbers: Vec<Number> = self.list(&List::Numbers, numbers_url).await?;
        let apps: Vec<Application> = self
            .list(
                &List::Applications,
                self.first_page(&List::Applications, PAGE_SIZE),
            )
            .await?;
        let services: Vec<Service> = self
            .list(&List::Services, self.first_page(&List::Services, PAGE_SIZE))
            .await?;
        let mut service_of = BTreeMap::new();
        for s in &services {
            let list = List::ServiceNumbers(s.sid.clone());
            let members: Vec<ServiceNumber> =
                self.list(&list, self.first_page(&list, PAGE_SIZE)).await?;
            for m in members {
                service_of.insert(m.sid, s.sid.clone());
            }
        }
        Ok(Account {
            numbers,
            applications: apps.into_iter().map(|a| (a.sid.clone(), a)).collect(),
            services: services.into_iter().map(|s| (s.sid.clone(), s)).collect(),
            service_of,
        })
    }

    /// POSTs `form` to the resource; Twilio changes only the fields sent.
    pub async fn update(
        &self,
        kind: Kind,
        sid: &str,
        form: &[(&str, &str)],
    ) -> Result<(), ApiError> {
        let url = self.resource_url(kind, sid);
        let body = serde_urlencoded::to_string(form).map_err(|e| ApiError::BadAnswer {
            what: format!("POST {url}"),
            cause: e.to_string(),
        })?;
        self.call(http::Method::POST, &url, Some(body))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credentials_prefer_an_api_key_and_never_show_the_secret() {
        let c = Credentials::from_env(env(&[
            ("TWILIO_ACCOUNT_SID", AC),
            ("TWILIO_API_KEY", "SKkey"),
            ("TWILIO_API_SECRET", "hush"),
            ("TWILIO_AUTH_TOKEN", "token"),
        ]))
        .unwrap();
        assert_eq!(c.header(), "Basic U0trZXk6aHVzaA==");
        assert_eq!(c.redacted(), "Basic <redacted: SKkey + API key secret>");
        assert!(!format!("{c:?}").contains("hush"));
        let t = Credentials::from_env(env(&[
            ("TWILIO_ACCOUNT_SID", AC),
            ("TWILIO_AUTH_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(t.redacted(), format!("Basic <redacted: {AC} + auth token>"));
        for (vars, want) in [
            (vec![], "TWILIO_ACCOUNT_SID: not set"),
            (vec![("TWILIO_ACCOUNT_SID", "AC1")], "expected AC followed"),
            (vec![("TWILIO_ACCOUNT_SID", AC)], "no credentials"),
            (
                vec![("TWILIO_ACCOUNT_SID", AC), ("TWILIO_API_KEY", "SK")],
                "set both",
            ),
        ] {
            let e = Credentials::from_env(env(&vars)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn only_loopback_replaces_the_api() {
        assert_eq!(
            loopback_base("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(loopback_base("http://[::1]:9").is_ok());
        assert!(loopback_base("http://localhost:9").is_ok());
        for bad in [
            "https://api.example.com",
            "http://10.0.0.1:9",
            "http://127.0.0.1:9/x",
            "ftp://127.0.0.1",
        ] {
            assert!(loopback_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies_and_retry_after_are_read() {
        let body = br#"{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
        assert_eq!(
            error_detail(body),
            " (Twilio error 20003: Authenticate; https://www.twilio.com/docs/errors/20003)"
        );
        assert_eq!(error_detail(b"<html>"), "");
        assert_eq!(retry_after(Some("3")), Duration::from_secs(3));
        assert_eq!(retry_after(None), Duration::from_secs(1));
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Duration::from_secs(1)
        );
    }
}
