//! The verdict corpus (`tests/corpus/twiml/cases.jsonl`, generated from twilio-python's and
//! twilio-node's TwiML builders plus mutations, see `tests/oracle/twiml/`): `check` must reach
//! every case's verdict. Prints the counts and every wrong verdict with its id and first diagnostic.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use twiml_failover::authoring::check::check_all;
use twiml_failover::templates::TemplateSettings;

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    role: String,
    files: BTreeMap<String, String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    expect: String,
    error_file: Option<String>,
    why: Option<String>,
}

const VOICE: &str = "<Response><Say>ok</Say></Response>";
const SMS: &str = "<Response><Message>ok</Message></Response>";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The case's set plus a minimal valid entry point where it has none, and a minimal other role.
fn lay_out(root: &Path, case: &Case) {
    for role in ["primary", "fallback"] {
        let dir = root.join(role);
        if role == case.role {
            for (name, text) in &case.files {
                write(&dir.join(name), text);
            }
        }
        for (entry, text) in [("voice.xml", VOICE), ("sms.xml", SMS)] {
            if role != case.role || !case.files.contains_key(entry) {
                write(&dir.join(entry), text);
            }
        }
    }
}

#[test]
fn check_reaches_every_verdict_of_the_corpus() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/twiml/cases.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("the corpus is committed");
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a corpus line"))
        .collect();
    let (mut ok_cases, mut error_cases) = (0, 0);
    let mut wrong = Vec::new();
    for case in &cases {
        let root = tempfile::tempdir().unwrap();
        lay_out(root.path(), case);
        let settings = TemplateSettings {
            vars: case.vars.clone(),
            ..TemplateSettings::default()
        };
        let found = check_all(root.path(), &settings);
        let first = found.first().map_or("(none)".to_string(), |d| {
            let file = d.file.strip_prefix(root.path()).unwrap_or(&d.file);
            format!("{}:{}:{}: {}", file.display(), d.line, d.col, d.message)
        });
        let right = match case.expect.as_str() {
            "ok" => {
                ok_cases += 1;
                found.is_empty()
            }
            "error" => {
                error_cases += 1;
                match &case.error_file {
                    None => !found.is_empty(),
                    Some(file) => {
                        let want = root.path().join(&case.role).join(file);
                        found.iter().any(|d| d.file == want)
                    }
                }
            }
            other => panic!("{}: unknown expect {other:?}", case.id),
        };
        if !right {
            let why = case.why.as_deref().unwrap_or("valid");
            wrong.push(format!(
                "{} (expect {}: {why}): first diagnostic: {first}",
                case.id, case.expect
            ));
        }
    }
    eprintln!(
        "{} cases: {ok_cases} ok, {error_cases} error; {} wrong verdicts",
        cases.len(),
        wrong.len()
    );
    for w in &wrong {
        eprintln!("WRONG {w}");
    }
    assert!(cases.len() > 100, "the corpus is too small");
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts (listed above)",
        wrong.len()
    );
}
