//! The signature check on arbitrary URL, parameters and header: never panics, and a signature made
//! for the input verifies while the fuzzer's own header almost never does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twiml_failover::signature::{sign, toggle_default_port, verify, Algorithm};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let url = parts.next().unwrap_or("");
    let header = parts.next().unwrap_or("");
    let params: Vec<(String, String)> = parts
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    let _ = toggle_default_port(url);
    let _ = verify(Algorithm::HmacSha1, &[b"k"], url, &params, header);
    let sig = sign(Algorithm::HmacSha256, b"k", url, &params);
    assert!(verify(Algorithm::HmacSha256, &[b"k"], url, &params, &sig));
});
