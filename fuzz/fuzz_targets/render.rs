//! Rendering the shipped templates with arbitrary parameters: never panics, and every answer is
//! well-formed TwiML rooted at <Response> (caller input cannot become markup).
#![no_main]
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use twiml_failover::commands::template_inputs::load_template_settings;
use twiml_failover::twilio::Role;
use twiml_failover::templates::Templates;
use twiml_failover::twilio::document;
use twiml_failover::webhook::Params;

fn sets() -> &'static [Templates; 2] {
    static SETS: OnceLock<[Templates; 2]> = OnceLock::new();
    SETS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let settings = load_template_settings(Some(&root.join("twiml-failover.toml"))).unwrap();
        let dir = root.join("twiml-templates");
        [
            Templates::load(&dir, Role::Primary, &settings).unwrap(),
            Templates::load(&dir, Role::Fallback, &settings).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1e}');
    let path = parts.next().unwrap_or("voice");
    let params: Params = parts
        .filter_map(|p| p.split_once('='))
        .chain([("CallSid", "CA1")])
        .collect();
    let params = Arc::new(params);
    for set in sets() {
        if let Ok(answer) = set.answer(path, params.clone()) {
            assert!(document::check(&answer.twiml, None).problems.is_empty(), "{}", answer.twiml);
        }
    }
});
