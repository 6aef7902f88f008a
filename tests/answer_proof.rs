//! The answer proof (`templates::lint::proof`) held to the strict parser and to Python's expat: an
//! answer of a proven template skips the per-answer parse, so every such answer, whatever the
//! caller sends, must be well-formed. Templates are loaded as a server loads them (lint, proof),
//! answered through `Templates::answer` with hostile parameter values (`]]`, `--`, `<`, `&`,
//! quotes, control characters, U+FFFE/U+FFFF, non-BMP, long), and each answer goes to
//! `twilio::xml::parse`; the batch goes to expat in one run.
//!
//! The shipped templates must all be proven; generated branchy ones (markup split across
//! branches, expressions in text, attributes, comments, CDATA, processing instructions, namespace
//! declarations, next to `]` and `>`) are proven or not as the proof decides, and the test counts
//! both so it cannot pass empty.
//!
//! Python is found via `PYTHON`, then `tests/oracle/.venv/bin/python`, then `python3`; without it
//! the test fails.

#[path = "common/expat.rs"]
mod expat;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use twiml_failover::templates::{TemplateSettings, Templates};
use twiml_failover::twilio::xml;
use twiml_failover::twilio::Role;
use twiml_failover::webhook::Params;

const TEMPLATES: usize = 300;
const VALUES_PER_TEMPLATE: usize = 4;

/// Values a caller can send: every character class escaping must get right, in runs.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z0-9 ]{0,4}",
        3 => Just("]]".to_string()),
        1 => Just("]".to_string()),
        1 => Just("]]>".to_string()),
        1 => Just("--".to_string()),
        1 => Just("-".to_string()),
        1 => Just("<".to_string()),
        1 => Just(">".to_string()),
        1 => Just("&".to_string()),
        1 => Just("&amp;&#1;&#x41;".to_string()),
        1 => Just("\"".to_string()),
        1 => Just("'".to_string()),
        1 => Just("?>".to_string()),
        3 => Just("?".to_string()),
        1 => Just("<![CDATA[".to_string()),
        1 => Just("\u{0}\u{1}\u{8}\u{B}\u{C}\u{1F}".to_string()),
        1 => Just("\t\r\n".to_string()),
        1 => Just("\u{7F}\u{85}".to_string()),
        1 => Just("\u{FFFE}\u{FFFF}\u{FFFD}".to_string()),
        1 => Just("😀\u{10FFFF}".to_string()),
        1 => Just("é\u{E000}".to_string()),
        1 => Just("x".repeat(3000)),
    ];
    prop_oneof![
        1 => Just(String::new()),
        1 => prop_oneof![Just("1"), Just("2"), Just("HELP")].prop_map(str::to_string),
        6 => prop::collection::vec(piece, 1..6).prop_map(|v| v.concat()),
    ]
}

fn params(channel: &str, values: &[String]) -> Arc<Params> {
    let mut p = Params::new();
    p.push(
        if channel == "voice" {
            "CallSid"
        } else {
            "MessageSid"
        },
        "CA1",
    );
    for (name, value) in ["Body", "From", "Digits", "CallerName"].iter().zip(values) {
        p.push(name, value);
    }
    Arc::new(p)
}

/// Text inside an element: literals (with `]` and `>`), references, expressions.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => Just("Hi "),
            2 => Just("\n  "),
            2 => Just("]"),
            2 => Just("]]"),
            2 => Just(">"),
            2 => Just("&amp;&#233;"),
            6 => Just("{{ Body }}"),
            2 => Just("{{- From -}}"),
            2 => Just("{{ CallerName | upper }}"),
            2 => Just("{{ Body | replace(\"a\", \"]\") }}"),
            2 => Just("{{ From | e164 }}"),
            2 => Just("{% if Digits == \"1\" %}]{% else %}{{ Digits }}{% endif %}"),
            2 => Just("<!-- note -->"),
            // Each of these keeps the template unproven.
            1 => Just("{{ Body }}>"),
            1 => Just("{{ Body }}]>"),
            1 => Just("<!-- {{ Body }} -->"),
            1 => Just("<![CDATA[{{ Body }}]]>"),
            1 => Just("<?pi {{ Body }}?>"),
        ],
        0..5,
    )
    .prop_map(|v| v.concat())
}

/// An attribute list for `<Say>`, values literal or from expressions.
fn say_attributes() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(" voice=\"{{ Body }}\""),
            Just(" language='{{ From }}]'"),
            Just(" loop=\"{{ Digits }}\""),
            Just(" loop=\"2\""),
            Just(" xmlns:p=\"{{ Body }}\""),
            Just(" xmlns=\"urn:x{{ From }}\""),
        ],
        0..2,
    )
    .prop_map(|v| {
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .filter(|a| seen.insert(a.split('=').next().unwrap_or_default()))
            .collect()
    })
}

/// Voice verbs, some split across branches.
fn verb() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (say_attributes(), text()).prop_map(|(a, t)| format!("<Say{a}>{t}</Say>")),
        1 => Just("<Pause length=\"1\"/>".to_string()),
        1 => text().prop_map(|t| format!(
            "{{% if Digits %}}<Say loop=\"2\">{{% elif Body == \"HELP\" %}}<Say voice=\"{{{{ Body }}}}\">\
             {{% else %}}<Say>{{% endif %}}{t}</Say>"
        )),
        1 => text().prop_map(|t| format!(
            "<Gather numDigits=\"{{{{ Digits }}}}\" timeout=\"5\"><Say>{t}</Say></Gather>"
        )),
        1 => Just("<Dial>{{ From }}</Dial>".to_string()),
    ]
}

fn template() -> impl Strategy<Value = String> {
    let prolog = prop_oneof![
        Just(""),
        Just("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        Just("{# channel: voice #}\n<?xml version=\"1.0\"?>\n"),
        Just("<?xml version=\"1.0\"?><?xml-stylesheet href=\"{{ Body }}\"?>"),
        // A value ending in `?` closes this one early, leaving `>?>` before the root.
        Just("<?xml version=\"1.0\"?><?pi {{ Body }}>?>"),
    ];
    let body = prop::collection::vec(
        prop_oneof![
            8 => verb(),
            3 => (verb(), verb()).prop_map(|(a, b)| format!(
                "\n{{% if Digits == \"1\" %}}\n  {a}\n{{% else %}}\n  {b}\n{{% endif %}}\n"
            )),
            1 => verb().prop_map(|a| format!("{{% for m in Body %}}{a}{{% endfor %}}")),
            1 => verb().prop_map(|a| format!("{{% set n = Body %}}{a}")),
        ],
        1..4,
    );
    (prolog, body).prop_map(|(p, b)| format!("{p}<Response>{}</Response>\n", b.concat()))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn hostile_settings(runner: &mut TestRunner) -> TemplateSettings {
    let mut settings = TemplateSettings::default();
    for var in ["company", "agent_number", "backup_number"] {
        let value = hostile().new_tree(runner).unwrap().current();
        settings.vars.insert(var.into(), value);
    }
    settings
}

/// Answers `name` with hostile values; every answer a template gave (not a fallback's) is checked
/// by the strict parser here and kept for expat.
fn answer_all(
    templates: &Templates,
    name: &str,
    channel: &str,
    runner: &mut TestRunner,
    answers: &mut Vec<String>,
) {
    let values = prop::collection::vec(hostile(), 4);
    for _ in 0..VALUES_PER_TEMPLATE {
        let values = values.new_tree(runner).unwrap().current();
        let Ok(answer) = templates.answer(name, params(channel, &values)) else {
            continue;
        };
        if let Err(e) = xml::parse(&answer.twiml) {
            panic!(
                "{name} answered malformed XML ({}) with {values:?}:\n{}",
                e.message, answer.twiml
            );
        }
        answers.push(answer.twiml);
    }
}

fn expat_agrees(answers: &[String]) {
    let python = expat::python_or_fail();
    let verdicts = expat::verdicts(&python, answers);
    let refused: Vec<&String> = answers
        .iter()
        .zip(&verdicts)
        .filter(|(_, ok)| !**ok)
        .map(|(a, _)| a)
        .collect();
    assert!(
        refused.is_empty(),
        "expat refuses {} answers, first: {:?}",
        refused.len(),
        refused.first()
    );
}

#[test]
fn every_shipped_template_is_proven_and_its_answers_are_well_formed() {
    let mut runner = TestRunner::new(Config::default());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("twiml-templates");
    let mut answers = Vec::new();
    for role in [Role::Primary, Role::Fallback] {
        let settings = hostile_settings(&mut runner);
        let templates = Templates::load(&root, role, &settings).expect("shipped templates load");
        let set = templates.active_set();
        let mut names: Vec<&str> = set.names().collect();
        names.sort_unstable();
        for name in names {
            assert!(set.is_proven(name), "{role:?}/{name}.xml is not proven");
            let channel = if name.starts_with("sms") {
                "sms"
            } else {
                "voice"
            };
            answer_all(&templates, name, channel, &mut runner, &mut answers);
        }
    }
    assert!(answers.len() > 30, "only {} answers", answers.len());
    expat_agrees(&answers);
}

#[test]
fn answers_of_proven_templates_are_well_formed_whatever_the_values() {
    let mut runner = TestRunner::new(Config::default());
    let dir = tempfile::tempdir().unwrap();
    let strategy = template();
    let (mut proven, mut unproven, mut refused) = (0, 0, 0);
    let mut answers = Vec::new();
    for i in 0..TEMPLATES {
        let source = strategy.new_tree(&mut runner).unwrap().current();
        let root = dir.path().join(i.to_string());
        let set = root.join("fallback");
        write(&set, "voice.xml", &source);
        write(
            &set,
            "sms.xml",
            "<Response><Message>{{ Body }}</Message></Response>",
        );
        let settings = hostile_settings(&mut runner);
        let Ok(templates) = Templates::load(&root, Role::Fallback, &settings) else {
            refused += 1;
            continue;
        };
        if !templates.active_set().is_proven("voice") {
            unproven += 1;
            continue;
        }
        proven += 1;
        // `voice` is also the set's channel default, so an answer that fails is not replaced.
        answer_all(&templates, "voice", "voice", &mut runner, &mut answers);
    }
    eprintln!(
        "{TEMPLATES} templates: {proven} proven, {unproven} loaded but checked per answer, \
         {refused} refused at load; {} answers",
        answers.len()
    );
    assert!(
        proven > TEMPLATES / 10 && unproven > TEMPLATES / 10,
        "the generator should give both proven and unproven templates"
    );
    expat_agrees(&answers);
}
