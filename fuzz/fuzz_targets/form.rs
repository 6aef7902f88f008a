//! The form parser on arbitrary bytes: never panics; what it accepts survives a round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = twiml_failover::webhook::parse_form(data) {
        let mut encoded = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                encoded.push('&');
            }
            encoded.push_str(&percent(k));
            encoded.push('=');
            encoded.push_str(&percent(v));
        }
        assert_eq!(twiml_failover::webhook::parse_form(encoded.as_bytes()).unwrap(), pairs);
    }
});

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
