//! A fake of Twilio's REST API for the `numbers` tests: IncomingPhoneNumbers and Applications
//! (2010-04-01), Messaging Services and their PhoneNumbers (messaging v1), with Twilio's
//! pagination (`next_page_uri`; `meta.next_page_url` as absolute messaging.twilio.com URLs),
//! Basic authentication, form-encoded updates and its error bodies. It records every request, and
//! every body it sends under the name of the spec schema it claims to follow, so that tests check
//! them against `tests/twilio_oai/schemas.json`. Faults are switched on per test.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "fake-auth-token-not-a-secret";
const DATE: &str = "Thu, 30 Jul 2015 20:00:00 +0000";
const ISO_DATE: &str = "2015-07-30T20:00:00Z";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub form: Vec<(String, String)>,
    pub at: Instant,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct State {
    /// The auth token the fake accepts (with ACCOUNT); TOKEN unless set.
    pub token: Option<String>,
    /// An API key (SK… sid, secret) the fake accepts besides, as Twilio does.
    pub api_key: Option<(String, String)>,
    pub numbers: Vec<Value>,
    pub apps: Vec<Value>,
    pub services: Vec<Value>,
    /// MG… -> PN… in the Service.
    pub members: BTreeMap<String, Vec<String>>,
    pub requests: Vec<Recorded>,
    /// (schema name, body) of every answer.
    pub sent: Vec<(String, Value)>,
    /// Answer this many next requests with 429.
    pub throttle: u32,
    /// Retry-After of those 429s.
    pub retry_after: u64,
    /// The numbers list's next_page_uri points at the page itself.
    pub stuck_pagination: bool,
    /// Every update answers 403 (a restricted API key).
    pub forbid_updates: bool,
    /// Sids whose update answers 500.
    pub fail_update: BTreeSet<String>,
    /// Delete this number when the first update arrives (deleted between plan and apply).
    pub delete_on_first_update: Option<String>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

pub fn sid(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:032x}")
}

/// A number with every field the spec lists; webhook fields unset.
pub fn number(n: usize, phone: &str, name: &str) -> Value {
    let sid = sid("PN", n);
    json!({
        "account_sid": ACCOUNT, "address_sid": null, "address_requirements": "none",
        "api_version": "2010-04-01", "beta": false,
        "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
        "date_created": DATE, "date_updated": DATE, "friendly_name": name,
        "identity_sid": null, "phone_number": phone, "origin": "twilio", "sid": sid,
        "sms_application_sid": null, "sms_fallback_method": "POST", "sms_fallback_url": "",
        "sms_method": "POST", "sms_url": "", "status_callback": "", "status_callback_method": "POST",
        "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{sid}.json"),
        "voice_receive_mode": "voice", "voice_application_sid": null, "voice_caller_id_lookup": false,
        "voice_fallback_method": "POST", "voice_fallback_url": null, "voice_method": "POST",
        "voice_url": null, "emergency_status": "Inactive", "emergency_address_sid": null,
        "emergency_address_status": "unregistered", "bundle_sid": null, "status": "in-use",
        "type": "local"
    })
}

pub fn app(n: usize, name: &str) -> Value {
    let sid = sid("AP", n);
    json!({
        "account_sid": ACCOUNT, "api_version": "2010-04-01", "date_created": DATE,
        "date_updated": DATE, "friendly_name": name, "message_status_callback": null, "sid": sid,
        "sms_fallback_method": "POST", "sms_fallback_url": null, "sms_method": "POST",
        "sms_status_callback": null, "sms_url": null, "status_callback": null,
        "status_callback_method": "POST",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Applications/{sid}.json"),
        "voice_caller_id_lookup": false, "voice_fallback_method": "POST", "voice_fallback_url": null,
        "voice_method": "POST", "voice_url": null, "public_application_connect_enabled": true
    })
}

pub fn service(n: usize, name: &str, defer_to_number: bool) -> Value {
    let sid = sid("MG", n);
    let base = format!("https://messaging.twilio.com/v1/Services/{sid}");
    json!({
        "sid": sid, "account_sid": ACCOUNT, "friendly_name": name, "date_created": ISO_DATE,
        "date_updated": ISO_DATE, "inbound_request_url": null, "inbound_method": "POST",
        "fallback_url": null, "fallback_method": "POST", "status_callback": null,
        "sticky_sender": true, "mms_converter": true, "smart_encoding": false,
        "scan_message_content": "inherit", "fallback_to_long_code": false,
        "area_code_geomatch": true, "synchronous_validation": true, "validity_period": 14400,
        "url": base.clone(),
        "links": {"phone_numbers": format!("{base}/PhoneNumbers"), "short_codes": format!("{base}/ShortCodes")},
        "usecase": "notifications", "us_app_to_person_registered": false,
        "use_inbound_webhook_on_number": defer_to_number
    })
}

fn error(status: u16, code: u32, message: &str) -> (u16, &'static str, Value) {
    (
        status,
        "error",
        json!({
            "code": code, "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
        }),
    )
}

/// `VoiceFallbackUrl` -> `voice_fallback_url`.
fn snake(form_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in form_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn query(q: &str) -> BTreeMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

struct Page {
    items: Vec<Value>,
    page: usize,
    size: usize,
    more: bool,
}

fn paginate(all: &[Value], q: &BTreeMap<String, String>) -> Page {
    let size = q
        .get("PageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50usize)
        .clamp(1, 1000);
    let page = q.get("Page").and_then(|s| s.parse().ok()).unwrap_or(0usize);
    let start = (page * size).min(all.len());
    let end = (start + size).min(all.len());
    Page {
        items: all[start..end].to_vec(),
        page,
        size,
        more: end < all.len(),
    }
}

fn v2010_page(path: &str, key: &str, all: &[Value], q: &BTreeMap<String, String>) -> Value {
    let p = paginate(all, q);
    let uri = |page: usize| format!("{path}?PageSize={}&Page={page}", p.size);
    let mut out = Map::new();
    out.insert(
        "end".into(),
        json!((p.page * p.size + p.items.len()).saturating_sub(1)),
    );
    out.insert("first_page_uri".into(), json!(uri(0)));
    let next = p.items.last().filter(|_| p.more).map(|last| {
        format!(
            "{}&PageToken=PA{}",
            uri(p.page + 1),
            last["sid"].as_str().unwrap_or("")
        )
    });
    out.insert("next_page_uri".into(), json!(next));
    out.insert("page".into(), json!(p.page));
    out.insert("page_size".into(), json!(p.size));
    out.insert(
        "previous_page_uri".into(),
        if p.page > 0 {
            json!(uri(p.page - 1))
        } else {
            Value::Null
        },
    );
    out.insert("start".into(), json!(p.page * p.size));
    out.insert("uri".into(), json!(uri(p.page)));
    out.insert(key.into(), Value::Array(p.items));
    Value::Object(out)
}

fn v1_page(path: &str, key: &str, all: &[Value], q: &BTreeMap<String, String>) -> Value {
    let p = paginate(all, q);
    let url = |page: usize| {
        format!(
            "https://messaging.twilio.com{path}?PageSize={}&Page={page}",
            p.size
        )
    };
    let next = p.items.last().filter(|_| p.more).map(|last| {
        format!(
            "{}&PageToken=PA{}",
            url(p.page + 1),
            last["sid"].as_str().unwrap_or("")
        )
    });
    json!({
        key: p.items,
        "meta": {
            "page": p.page, "page_size": p.size, "first_page_url": url(0),
            "previous_page_url": if p.page > 0 { json!(url(p.page - 1)) } else { Value::Null },
            "next_page_url": next, "key": key, "url": url(p.page)
        }
    })
}

fn update(list: &mut [Value], sid: &str, form: &[(String, String)]) -> Option<Value> {
    let item = list.iter_mut().find(|v| v["sid"] == sid)?;
    for (k, v) in form {
        let value = match v.as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(v),
        };
        item[snake(k)] = value;
    }
    item["date_updated"] = json!(if item["date_created"].as_str() == Some(ISO_DATE) {
        ISO_DATE
    } else {
        DATE
    });
    Some(item.clone())
}

fn route(
    s: &mut State,
    method: &str,
    path: &str,
    q: &BTreeMap<String, String>,
    form: &[(String, String)],
) -> (u16, &'static str, Value) {
    let acct = format!("/2010-04-01/Accounts/{ACCOUNT}");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, path) {
        ("GET", p) if p == format!("{acct}/IncomingPhoneNumbers.json") => {
            let all: Vec<Value> = s
                .numbers
                .iter()
                .filter(|n| {
                    q.get("PhoneNumber")
                        .is_none_or(|want| n["phone_number"] == **want)
                })
                .cloned()
                .collect();
            let mut page = v2010_page(p, "incoming_phone_numbers", &all, q);
            if s.stuck_pagination {
                page["next_page_uri"] = page["uri"].clone();
            }
            (200, "incoming_phone_number_list", page)
        }
        ("GET", p) if p == format!("{acct}/Applications.json") => (
            200,
            "application_list",
            v2010_page(p, "applications", &s.apps, q),
        ),
        ("GET", "/v1/Services") => (
            200,
            "service_list",
            v1_page(path, "services", &s.services, q),
        ),
        ("GET", _)
            if parts.len() == 4
                && parts[..2] == ["v1", "Services"]
                && parts[3] == "PhoneNumbers" =>
        {
            let mg = parts[2];
            let Some(members) = s.members.get(mg).cloned() else {
                return error(
                    404,
                    20404,
                    &format!("The requested resource {path} was not found"),
                );
            };
            let items: Vec<Value> = members
                .iter()
                .filter_map(|pn| s.numbers.iter().find(|n| n["sid"] == **pn))
                .map(|n| {
                    json!({
                        "sid": n["sid"], "account_sid": ACCOUNT, "service_sid": mg,
                        "date_created": ISO_DATE, "date_updated": ISO_DATE,
                        "phone_number": n["phone_number"], "country_code": "US",
                        "capabilities": ["SMS", "MMS", "Voice"],
                        "url": format!("https://messaging.twilio.com/v1/Services/{mg}/PhoneNumbers/{}", n["sid"].as_str().unwrap_or(""))
                    })
                })
                .collect();
            (
                200,
                "service_phone_number_list",
                v1_page(path, "phone_numbers", &items, q),
            )
        }
        ("POST", p) => {
            let (list, schema) = if p.starts_with(&format!("{acct}/IncomingPhoneNumbers/")) {
                (&mut s.numbers, "incoming_phone_number")
            } else if p.starts_with(&format!("{acct}/Applications/")) {
                (&mut s.apps, "application")
            } else if parts.len() == 3 && parts[..2] == ["v1", "Services"] {
                (&mut s.services, "service")
            } else {
                return error(
                    404,
                    20404,
                    &format!("The requested resource {path} was not found"),
                );
            };
            let sid = p
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".json")
                .to_string();
            if s.forbid_updates {
                return error(403, 20403, "Permission Denied");
            }
            if s.fail_update.contains(&sid) {
                return error(500, 20500, "Internal Server Error");
            }
            match update(list, &sid, form) {
                Some(v) => (200, schema, v),
                None => error(
                    404,
                    20404,
                    &format!("The requested resource {path} was not found"),
                ),
            }
        }
        _ => error(
            404,
            20404,
            &format!("The requested resource {path} was not found"),
        ),
    }
}

fn authorized(
    req: &hyper::Request<hyper::body::Incoming>,
    token: &str,
    api_key: Option<&(String, String)>,
) -> bool {
    use base64::Engine;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let got = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    got == Some(basic(ACCOUNT, token).as_str())
        || api_key.is_some_and(|(key, secret)| got == Some(basic(key, secret).as_str()))
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let q = query(req.uri().query().unwrap_or(""));
    let (token, api_key) = {
        let s = state.lock().unwrap();
        (s.token.clone(), s.api_key.clone())
    };
    let ok_auth = authorized(&req, token.as_deref().unwrap_or(TOKEN), api_key.as_ref());
    let form_type = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-www-form-urlencoded");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let mut s = state.lock().unwrap();
    let (status, schema, value, retry_after) = if !ok_auth {
        let (st, sc, v) = error(401, 20003, "Authenticate");
        (st, sc, v, None)
    } else if s.throttle > 0 {
        s.throttle -= 1;
        let (st, sc, v) = error(429, 20429, "Too Many Requests");
        (st, sc, v, Some(s.retry_after))
    } else if method == "POST" && !form_type {
        let (st, sc, v) = error(400, 20001, "Updates are form-encoded");
        (st, sc, v, None)
    } else {
        if method == "POST" {
            if let Some(pn) = s.delete_on_first_update.take() {
                s.numbers.retain(|n| n["sid"] != pn);
            }
        }
        let (st, sc, v) = route(&mut s, &method, &path, &q, &form);
        (st, sc, v, None)
    };
    s.requests.push(Recorded {
        method,
        path: match req_query_string(&q) {
            Some(qs) => format!("{path}?{qs}"),
            None => path,
        },
        form,
        at: Instant::now(),
        status,
    });
    s.sent.push((schema.to_string(), value.clone()));
    drop(s);
    let mut answer = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(secs) = retry_after {
        answer = answer.header("retry-after", secs.to_string());
    }
    Ok(answer
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("a valid response"))
}

fn req_query_string(q: &BTreeMap<String, String>) -> Option<String> {
    (!q.is_empty()).then(|| serde_urlencoded::to_string(q).unwrap_or_default())
}

impl Fake {
    pub fn start(state: State) -> Fake {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(state));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let st = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Fake {
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Updates received so far: (path, form).
    pub fn updates(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.method == "POST")
                .map(|r| (r.path.clone(), r.form.clone()))
                .collect()
        })
    }

    /// Every answer the fake sent is valid against the spec schema it claims, and every update form
    /// only names fields of the spec's request body.
    pub fn assert_spec_conform(&self) {
        let text = include_str!("../twilio_oai/schemas.json");
        let root: Value = serde_json::from_str(text).unwrap();
        let validator = |name: &str| {
            let schema = json!({"$defs": root["$defs"], "$ref": format!("#/$defs/{name}")});
            jsonschema::validator_for(&schema).unwrap()
        };
        let mut cache: BTreeMap<String, jsonschema::Validator> = BTreeMap::new();
        let (sent, requests) = self.with(|s| (s.sent.clone(), s.requests.clone()));
        assert!(!sent.is_empty());
        for (name, body) in &sent {
            let v = cache.entry(name.clone()).or_insert_with(|| validator(name));
            let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{body}");
        }
        for r in requests.iter().filter(|r| r.method == "POST") {
            let name = if r.path.contains("/IncomingPhoneNumbers/") {
                "incoming_phone_number_update"
            } else if r.path.contains("/Applications/") {
                "application_update"
            } else {
                "service_update"
            };
            let form: serde_json::Map<String, Value> =
                r.form.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let v = cache.entry(name.into()).or_insert_with(|| validator(name));
            let body = Value::Object(form);
            assert!(v.is_valid(&body), "{name}: {body}");
        }
    }
}
