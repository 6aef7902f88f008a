//! Request decoding on an arbitrary target, headers and body: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twiml_failover::webhook::{decode, UrlRules};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let Ok(uri) = lines.next().unwrap_or("/").parse::<http::Uri>() else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                http::header::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    let rules = UrlRules { public_url: None, scheme: "https", trust_forwarded: true };
    for method in [http::Method::GET, http::Method::POST] {
        let body = bytes::Bytes::copy_from_slice(body);
        if let Ok(hook) = decode(rules, &method, &uri, &headers, body) {
            let _ = hook.into_params();
        }
    }
});
