//! `import-bin` against a Mustache implementation: each TwiML Bin of `tests/bins/` (written from
//! Twilio's documentation, see its README) is converted, must pass `check`, and must render, through
//! `render`, the same document pystache renders from the original Bin with the same parameters
//! (hostile ones included). Documents are compared as XML: element names, attributes and text,
//! with entities decoded and whitespace-only text dropped (Mustache and this project escape with
//! different entities and drop different blank lines; neither changes what Twilio reads).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::process::copy_dir;
use common::shipped_templates;

/// Markup and quotes a caller could send (no characters XML forbids: Bins would send those raw
/// and Twilio would refuse the document; here they become U+FFFD).
const HOSTILE: &str = "</Say><Redirect>https://evil.example/</Redirect> \"quoted\" 'it''s' & <b>";

/// Request parameters in order.
type Params = Vec<(&'static str, &'static str)>;

/// Each Bin with the parameter sets it is rendered with.
fn cases() -> Vec<(&'static str, Vec<Params>)> {
    let call = vec![
        ("CallSid", "CA1"),
        ("From", "+15550100001"),
        ("To", "+15550199999"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p = call.clone();
        p.extend_from_slice(extra);
        p
    };
    vec![
        (
            "sms-forward",
            vec![
                vec![
                    ("MessageSid", "SM1"),
                    ("From", "+15550100001"),
                    ("Body", "hello"),
                ],
                vec![("MessageSid", "SM1"), ("From", HOSTILE), ("Body", HOSTILE)],
                vec![("MessageSid", "SM1")],
            ],
        ),
        (
            "reminder",
            vec![
                with(&[("Name", "Jane"), ("Date", "Friday")]),
                with(&[("Name", HOSTILE)]),
                with(&[]),
            ],
        ),
        (
            "simulring",
            vec![
                with(&[
                    ("Dest[]", "+12025551212"),
                    ("Dest[]", "+17035551212"),
                    ("Dest[]", "+12065551212"),
                ]),
                with(&[("Dest[]", "+12025551212")]),
                with(&[("Dest[]", HOSTILE), ("Dest[]", "+1")]),
                with(&[]),
            ],
        ),
        (
            "sip-to-pstn",
            vec![
                vec![
                    ("CallSid", "CA1"),
                    ("From", "sip:+15550100001@pbx.example.com"),
                    ("To", "sip:+15125551212@mydomain.sip.us1.twilio.com"),
                ],
                vec![("CallSid", "CA1"), ("From", "anonymous"), ("To", HOSTILE)],
                vec![("CallSid", "CA1")],
            ],
        ),
        (
            "keypress",
            vec![
                with(&[("Digits", "5")]),
                with(&[("Digits", HOSTILE)]),
                with(&[("CallerName", HOSTILE)]),
                with(&[("Digits", "")]),
            ],
        ),
    ]
}

/// pystache's rendering of each `(bin, params)`, or None (the test fails unless skipping is asked).
fn oracle(jobs: &[(String, Vec<(&str, &str)>)]) -> Option<Vec<String>> {
    let python = common::oracle_python()?;
    let ok = Command::new(&python)
        .args(["-c", "import pystache"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("TWIML_FAILOVER_SKIP_ORACLE").is_some(),
            "pystache is needed: run tests/oracle/setup.sh (or set TWIML_FAILOVER_SKIP_ORACLE=1 to \
             skip this test knowingly)"
        );
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/mustache.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (bin, params) in jobs {
        input += &serde_json::json!({ "bin": bin, "params": params }).to_string();
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// The document as Twilio reads it: elements, attributes, and text with whitespace-only runs dropped.
fn canonical(doc: &str) -> String {
    fn walk(node: roxmltree::Node, out: &mut String) {
        if node.is_text() {
            let text = node.text().unwrap_or("");
            if !text.trim().is_empty() {
                out.push_str(&format!("{:?}", text.trim()));
            }
            return;
        }
        if !node.is_element() {
            return;
        }
        let mut attrs: Vec<String> = node
            .attributes()
            .map(|a| format!("{}={:?}", a.name(), a.value()))
            .collect();
        attrs.sort();
        out.push_str(&format!("<{} {}>", node.tag_name().name(), attrs.join(" ")));
        for child in node.children() {
            walk(child, out);
        }
        out.push_str("</>");
    }
    let parsed = roxmltree::Document::parse(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
    let mut out = String::new();
    walk(parsed.root_element(), &mut out);
    out
}

#[test]
fn imported_bins_pass_check_and_render_as_mustache_does() {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bins");
    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), root.path());
    let mut extra_params = Vec::new();
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    let cases = cases();
    for (name, _) in &cases {
        let file = bins.join(format!("{name}.xml"));
        let (code, template, err) = common::run_bin(&["import-bin", file.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{name}: {err}");
        // The custom parameters it names are the ones `check` needs in extra_params.
        if let Some(list) = err.split("extra_params = [").nth(1) {
            let list = list.split(']').next().unwrap();
            extra_params.extend(list.split(", ").map(str::to_string));
        }
        std::fs::write(
            root.path().join(format!("primary/bin-{name}.xml")),
            template,
        )
        .unwrap();
    }
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "extra_params = [{}]\n[vars]\ncompany = \"Example Corp\"\nagent_number = \"+15555550100\"\n\
             backup_number = \"+15555550199\"\n",
            extra_params.join(", ")
        ),
    )
    .unwrap();
    let (templates, config) = (root.path().to_str().unwrap(), config.to_str().unwrap());
    let (code, out, err) = common::run_bin(
        &["check", "--templates", templates, "--config", config],
        &[],
    );
    assert_eq!(code, 0, "the imported Bins pass check:\n{out}{err}");
    for (name, sets) in &cases {
        let bin = std::fs::read_to_string(bins.join(format!("{name}.xml"))).unwrap();
        for params in sets {
            let path = format!("/bin-{name}");
            let mut args = vec![
                "render",
                &path,
                "--templates",
                templates,
                "--config",
                config,
            ];
            let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for pair in &pairs {
                args.extend(["--param", pair]);
            }
            let (code, out, err) = common::run_bin(&args, &[]);
            assert_eq!(code, 0, "{name} {params:?}: {err}");
            ours.push((format!("{name} {params:?}"), out));
            jobs.push((bin.clone(), params.clone()));
        }
    }
    let Some(theirs) = oracle(&jobs) else { return };
    assert_eq!(theirs.len(), ours.len());
    for ((case, ours), theirs) in ours.iter().zip(&theirs) {
        assert_eq!(
            canonical(ours),
            canonical(theirs),
            "{case}\nours:\n{ours}\npystache:\n{theirs}"
        );
    }
}

#[test]
fn import_bin_refuses_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin.xml");
    std::fs::write(
        &file,
        "<Response>\n  <Say>{{{Body}}}</Say>\n  {{> footer}}\n</Response>\n",
    )
    .unwrap();
    let (code, out, err) = common::run_bin(&["import-bin", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "");
    let shown = file.display().to_string();
    assert!(
        err.contains(&format!(
            "{shown}:2:8: `{{{{{{…}}}}}}` writes a value unescaped"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{shown}:3:3: partials")), "{err}");
}
