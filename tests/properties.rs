//! Property tests with hostile input: the form parser, the signature check, request decoding and
//! template rendering never panic, and caller input never becomes markup. (The same targets run
//! under libFuzzer in fuzz/.)

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use twiml_failover::signature::{sign, verify, Algorithm};
use twiml_failover::templates::Templates;
use twiml_failover::twilio::document;
use twiml_failover::twilio::Role;
use twiml_failover::webhook::{decode, parse_form, Params, UrlRules};

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[<>&'\"%+=;/\\\\ a-zA-Z0-9\u{0}-\u{1f}\u{fffe}\u{ffff}😀]{0,40}",
        Just("</Message><Redirect>http://evil.example/</Redirect><Message>".to_string()),
        Just("]]><Injected/><![CDATA[".to_string()),
    ]
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Body".to_string()),
        Just("Digits".to_string()),
        Just("From".to_string()),
        Just("To".to_string()),
        Just("SpeechResult".to_string()),
        Just("DialCallStatus".to_string()),
        Just("CallSid".to_string()),
        Just("MessageSid".to_string()),
        "[A-Za-z]{1,12}",
    ]
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((param_name(), hostile_string()), 0..12)
}

/// A voice template with expressions in text and in attribute values, in every kind of branch.
const BRANCHY_VOICE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<Response>
{% if Digits == \"1\" %}
  <Say voice=\"{{ From }}\" language='{{ To | lower }}'>{{ Digits }} {{ From | upper }}</Say>
{% elif Digits %}
  <Dial callerId=\"{{ To | e164 }}\">{{ From | e164 if From else company }}</Dial>
{% else %}
  <Say>{{ SpeechResult | default(\"nothing\") | trim | replace(\"a\", Body) }}{{ Body ~ From }}</Say>
{% endif %}
</Response>
";

/// The shipped templates, plus [`BRANCHY_VOICE`] as a primary `branchy` template.
fn templates_with_branchy(role: Role) -> (tempfile::TempDir, Templates) {
    let root = tempfile::tempdir().unwrap();
    for dir in ["primary", "fallback"] {
        let to = root.path().join(dir);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(common::shipped_templates().join(dir)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(root.path().join("primary/branchy.xml"), BRANCHY_VOICE).unwrap();
    let settings = twiml_failover::commands::template_inputs::load_template_settings(Some(
        &common::example_config(),
    ))
    .unwrap();
    let t = Templates::load(root.path(), role, &settings).unwrap();
    (root, t)
}

#[test]
fn shipped_templates_load_with_a_branchy_one() {
    for role in [Role::Primary, Role::Fallback] {
        let (_root, t) = templates_with_branchy(role);
        let names: Vec<&str> = t.active_set().names().collect();
        assert!(names.len() >= 5, "{names:?}");
    }
}

fn templates(role: Role) -> Templates {
    let settings = twiml_failover::commands::template_inputs::load_template_settings(Some(
        &common::example_config(),
    ))
    .unwrap();
    Templates::load(&common::shipped_templates(), role, &settings).unwrap()
}

/// Every element name a template file could ever produce: the names in its source.
fn source_elements(role: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(common::shipped_templates().join(role)).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for part in text.split('<').skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn form_parsing_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(pairs) = parse_form(&bytes) {
            let encoded = serde_urlencoded::to_string(pairs.to_pairs()).unwrap();
            prop_assert_eq!(parse_form(encoded.as_bytes()).unwrap(), pairs);
        }
    }

    #[test]
    fn signatures_verify_and_any_change_breaks_them(
        path in "[a-z/]{0,20}",
        query in "[a-zA-Z0-9=&%+]{0,20}",
        p in params(),
        which in any::<prop::sample::Index>(),
    ) {
        let url = format!("https://x.example/{path}?{query}");
        let sig = sign(Algorithm::HmacSha1, b"token", &url, &p);
        prop_assert!(verify(Algorithm::HmacSha1, &[b"token"], &url, &p, &sig));
        prop_assert!(!verify(Algorithm::HmacSha1, &[b"other"], &url, &p, &sig));
        if !p.is_empty() {
            let mut changed = p.clone();
            let i = which.index(p.len());
            changed[i].1.push('x');
            // Unless the changed pair now duplicates another one exactly, the string differs.
            let duplicate = p.iter().any(|pair| pair == &changed[i]);
            prop_assume!(!duplicate);
            prop_assert!(!verify(Algorithm::HmacSha1, &[b"token"], &url, &changed, &sig));
        }
    }

    #[test]
    fn request_decoding_never_panics(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
        target in "/[ -~]{0,60}",
        content_type in prop_oneof![
            Just("application/x-www-form-urlencoded".to_string()),
            Just("application/json".to_string()),
            any::<String>(),
        ],
        host in any::<String>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let Ok(uri) = target.parse::<http::Uri>() else { return Ok(()); };
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = content_type.parse() { headers.insert("content-type", v); }
        if let Ok(v) = host.parse() { headers.insert("host", v); }
        let rules = UrlRules { public_url: None, scheme: "http", trust_forwarded: true };
        let method: http::Method = method.parse().unwrap();
        if let Ok(hook) = decode(rules, &method, &uri, &headers, body.into()) {
            let _ = hook.param("AccountSid");
            let _ = hook.into_params();
        }
    }

    #[test]
    fn rendering_hostile_parameters_never_makes_markup(p in params(), path in prop_oneof![
        Just("voice"), Just("menu"), Just("sms"), Just("voicemail"), Just("dial-status"), Just("nowhere"),
    ]) {
        for (role, dir) in [(Role::Primary, "primary"), (Role::Fallback, "fallback")] {
            let allowed = source_elements(dir);
            let mut with_sid: Params = p.iter().map(|(k, v)| (k, v)).collect();
            with_sid.push("CallSid", "CA1");
            let t = templates(role);
            if let Ok(answer) = t.answer(path, Arc::new(with_sid)) {
                let names = common::elements(&answer.twiml);
                prop_assert_eq!(&names[0], "Response");
                for n in names {
                    prop_assert!(allowed.contains(&n), "{} not in the template source", n);
                }
            }
        }
    }

    #[test]
    fn templates_render_well_formed_twiml(p in params(), path in prop_oneof![
        Just("branchy"), Just("voice"), Just("menu"), Just("sms"), Just("voicemail"), Just("dial-status"),
    ]) {
        let (_root, t) = templates_with_branchy(Role::Primary);
        let set = t.active_set();
        let ctx = minijinja::Value::from_object(twiml_failover::templates::RenderContext::new(
            twiml_failover::templates::context::vars(
                &[("company".to_string(), "A & <B>".to_string())].into_iter().collect(),
            ),
            Arc::new(p.iter().map(|(k, v)| (k, v)).collect()),
        ));
        // Answers are checked by the strict parser before they leave; hold the schema to them too.
        if let Ok(out) = set.render(path, &ctx) {
            let problems = document::check(&out, None).problems;
            prop_assert!(problems.is_empty(), "{:?} in {}", problems, out);
        }
    }

    #[test]
    fn routing_never_panics(path in any::<String>()) {
        let _ = twiml_failover::route::route(&http::Method::POST, &path);
    }
}
