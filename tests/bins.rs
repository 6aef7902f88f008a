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
use std::sync::Arc;

use common::process::copy_dir;
use common::shipped_templates;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use twiml_failover::templates::{ServedBy, TemplateSettings, Templates};
use twiml_failover::twilio::Role;
use twiml_failover::webhook::Params;

/// Markup and quotes a caller could send (no characters XML forbids: Bins would send those raw
/// and Twilio would refuse the document; here they become U+FFFD).
const HOSTILE: &str = "</Say><Redirect>https://evil.example/</Redirect> \"quoted\" 'it''s' & <b>";

/// Request parameters in order.
type Pairs = Vec<(&'static str, &'static str)>;

/// Each Bin with the parameter sets it is rendered with.
fn cases() -> Vec<(&'static str, Vec<Pairs>)> {
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
                // One number sent without brackets is one number to dial, not one per character.
                with(&[("Dest", "+12025551212")]),
                with(&[("Dest[]", HOSTILE), ("Dest[]", "+1")]),
                with(&[("Dest[]", ""), ("Dest[]", "+1")]),
                with(&[("Dest", "")]),
                with(&[]),
            ],
        ),
        (
            // `{{#each Dest}}…{{this}}…{{/each}}` is compared with pystache's `{{#Dest}}…{{.}}…`.
            "simulring-each",
            vec![
                with(&[("Dest[]", "+12025551212"), ("Dest[]", "+17035551212")]),
                with(&[("Dest", "+12025551212")]),
                with(&[("Dest", "+12025551212"), ("Dest[]", "+17035551212")]),
                with(&[]),
            ],
        ),
        (
            "thank-you",
            vec![
                with(&[("Name", "Jane")]),
                with(&[("Name", HOSTILE)]),
                with(&[("Name", "")]),
                with(&[("Name[]", "Jane"), ("Name[]", "John")]),
                with(&[]),
            ],
        ),
        (
            "mms-photos",
            vec![
                vec![
                    ("MessageSid", "SM1"),
                    ("From", "+15550100001"),
                    ("Photo", "https://example.com/a.jpg"),
                ],
                vec![
                    ("MessageSid", "SM1"),
                    ("From", HOSTILE),
                    ("Photo[]", "https://example.com/a.jpg"),
                    ("Photo[]", "https://example.com/b.jpg?x=1&y=2"),
                ],
                vec![("MessageSid", "SM1")],
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

/// What pystache and chevron render for each `(bin, params)` (`tests/oracle/mustache.py`); without
/// them the test fails.
fn oracle(jobs: &[(String, Vec<(&str, &str)>)]) -> Vec<Rendered> {
    let python = common::oracle_python();
    let ok = Command::new(&python)
        .args(["-c", "import pystache, chevron"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "pystache and chevron are needed: run tests/oracle/setup.sh \
         (or skip this test knowingly: cargo test -- --skip NAME)"
    );
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
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: the answers fill the pipe back while the questions are still going in.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One case as the two Mustache implementations render it (None: that one raised).
#[derive(Debug, serde::Deserialize)]
struct Rendered {
    pystache: Option<String>,
    chevron: Option<String>,
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
            // Handlebars' `each` is the Mustache section over the same name.
            let mustache = bin
                .replace("{{#each Dest}}", "{{#Dest}}")
                .replace("{{/each}}", "{{/Dest}}")
                .replace("{{this}}", "{{.}}");
            jobs.push((mustache, params.clone()));
        }
    }
    let theirs = oracle(&jobs);
    assert_eq!(theirs.len(), ours.len());
    for ((case, ours), theirs) in ours.iter().zip(&theirs) {
        let (Some(pystache), Some(chevron)) = (&theirs.pystache, &theirs.chevron) else {
            panic!("{case}: an oracle failed: {theirs:?}");
        };
        assert_eq!(
            canonical(ours),
            canonical(pystache),
            "{case}\nours:\n{ours}\npystache:\n{pystache}"
        );
        if canonical(chevron) != canonical(pystache) {
            // chevron skips a list's empty items (`Dest[]=` sent empty); pystache, the spec and
            // this project keep them.
            eprintln!("{case}: chevron differs from pystache:\n{chevron}");
        }
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

/// Names a generated Bin prints as `{{Name}}`; they are sent plain (once, or repeated).
const SCALARS: [&str; 3] = ["Name", "Digits", "From"];
/// Names a generated Bin only opens sections on; sent plain, as `Name[]`, or both. (A list written
/// as `{{Name}}` is Python's `repr` in both oracles, nothing a Bin means; it is not compared.)
const LISTS: [&str; 2] = ["Dest", "Photo"];

/// Values a caller or a Bin's URL can carry: markup, entities, quotes, Mustache's own braces,
/// line breaks, non-ASCII, empty.
fn value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Jane"),
        Just("+12025551212"),
        Just("sip:+15125551212@pbx.example.com"),
        Just("<"),
        Just(">"),
        Just("&"),
        Just("&amp;"),
        Just("\""),
        Just("'"),
        Just("{{"),
        Just("}}"),
        Just("{{Name}}"),
        Just("{% if x %}"),
        Just("]]>"),
        Just("<Say>hi</Say>"),
        Just("😀"),
        Just("é"),
        Just(" "),
        Just("\n"),
        Just("\t"),
        Just("0"),
    ];
    proptest::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
}

/// Whitespace a Bin author puts around tags: nothing, spaces, tabs, line breaks (CRLF too).
fn space() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just(""),
        1 => Just(" "),
        2 => Just("\n"),
        2 => Just("\n  "),
        1 => Just("  \n"),
        1 => Just("\t"),
        1 => Just("\r\n"),
        1 => Just(" \n\n"),
    ]
}

/// A part of a generated Bin's text.
#[derive(Debug, Clone)]
enum Part {
    Text(&'static str),
    Var(&'static str),
    /// `{{.}}`: written as `.` outside every `{{#…}}` section.
    Dot,
    E164(&'static str),
    /// `{{#name}}` or `{{^name}}` (inverted) with its body; whitespace before and after each tag.
    Section {
        inverted: bool,
        name: &'static str,
        body: Vec<Part>,
        space: [&'static str; 4],
    },
    /// A `<Number>` (voice) or `<Media>` (messaging) element holding text.
    Element(Vec<Part>),
}

fn name() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["Name", "Digits", "From", "Dest", "Photo"])
}

fn section(inner: impl Strategy<Value = Vec<Part>>) -> impl Strategy<Value = Part> {
    (
        any::<bool>(),
        name(),
        inner,
        [space(), space(), space(), space()],
    )
        .prop_map(|(inverted, name, body, space)| Part::Section {
            inverted,
            name,
            body,
            space,
        })
}

/// Text: words, variables, `{{.}}`, `{{#e164}}`, sections of text.
fn text() -> impl Strategy<Value = Vec<Part>> {
    let leaf = prop_oneof![
        3 => proptest::sample::select(vec!["Hi", " ", ", ", "\n", "x.", "+1", "\t"]).prop_map(Part::Text),
        3 => proptest::sample::select(SCALARS.to_vec()).prop_map(Part::Var),
        3 => Just(Part::Dot),
        1 => proptest::sample::select(SCALARS.to_vec()).prop_map(Part::E164),
    ];
    let part = leaf.prop_recursive(2, 6, 3, |inner| {
        section(proptest::collection::vec(inner, 0..3))
    });
    proptest::collection::vec(part, 0..3)
}

/// Elements: `<Number>`/`<Media>` with text, and sections of them.
fn elements() -> impl Strategy<Value = Vec<Part>> {
    let element = text().prop_map(Part::Element);
    let part = element.prop_recursive(1, 3, 2, |inner| {
        section(proptest::collection::vec(inner, 1..3))
    });
    proptest::collection::vec(part, 0..3)
}

/// Writes `parts` as Bin text; `element` names the element of [`Part::Element`].
fn write_parts(parts: &[Part], element: &str, in_section: bool, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(name) => out.push_str(&format!("{{{{{name}}}}}")),
            Part::Dot if in_section => out.push_str("{{.}}"),
            Part::Dot => out.push('.'),
            Part::E164(name) => out.push_str(&format!("{{{{#e164}}}}{{{{{name}}}}}{{{{/e164}}}}")),
            Part::Section {
                inverted,
                name,
                body,
                space,
            } => {
                let sigil = if *inverted { '^' } else { '#' };
                out.push_str(&format!("{}{{{{{sigil}{name}}}}}{}", space[0], space[1]));
                write_parts(body, element, in_section || !inverted, out);
                out.push_str(&format!("{}{{{{/{name}}}}}{}", space[2], space[3]));
            }
            Part::Element(body) => {
                // Never empty (both need their text), and a `<Media>` URL always holds a value (a
                // URL of literal text only is judged as one by `check`).
                let lead = if element == "Media" { "{{From}}" } else { "n" };
                out.push_str(&format!("<{element}>{lead}"));
                write_parts(body, element, in_section, out);
                out.push_str(&format!("</{element}>"));
            }
        }
    }
}

/// A whole Bin: voice (`<Say>` text and a `<Dial>` of `<Number>`s) or messaging (a `<Body>` and
/// `<Media>`s), with the request parameters it is asked with.
fn generated_case() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    let scalar = prop_oneof![
        Just(vec![]),
        value().prop_map(|v| vec![v]),
        (value(), value()).prop_map(|(a, b)| vec![a, b]),
    ];
    let list = prop_oneof![
        Just((vec![], vec![])),
        value().prop_map(|v| (vec![v], vec![])),
        proptest::collection::vec(value(), 1..4).prop_map(|l| (vec![], l)),
        (value(), proptest::collection::vec(value(), 1..3)).prop_map(|(v, l)| (vec![v], l)),
    ];
    (
        any::<bool>(),
        any::<bool>(),
        text(),
        elements(),
        [space(), space(), space()],
        [scalar.clone(), scalar.clone(), scalar],
        [list.clone(), list],
    )
        .prop_map(
            |(voice, declaration, text, elements, space, scalars, lists)| {
                let mut bin = String::new();
                if declaration {
                    bin.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                }
                let (outer, inner, element) = if voice {
                    (("<Say>", "</Say>"), ("<Dial>", "</Dial>"), "Number")
                } else {
                    (("<Body>Re: ", "</Body>"), ("", ""), "Media")
                };
                bin.push_str(&format!("<Response>{}", space[0]));
                if !voice {
                    bin.push_str("<Message>");
                }
                bin.push_str(outer.0);
                write_parts(&text, element, false, &mut bin);
                bin.push_str(outer.1);
                bin.push_str(space[1]);
                bin.push_str(inner.0);
                write_parts(&elements, element, false, &mut bin);
                bin.push_str(inner.1);
                if !voice {
                    bin.push_str("</Message>");
                }
                bin.push_str(&format!("{}</Response>\n", space[2]));
                let mut params = vec![if voice {
                    ("CallSid".to_string(), "CA1".to_string())
                } else {
                    ("MessageSid".to_string(), "SM1".to_string())
                }];
                for (name, values) in SCALARS.iter().zip(scalars) {
                    params.extend(values.into_iter().map(|v| (name.to_string(), v)));
                }
                for (name, (plain, list)) in LISTS.iter().zip(lists) {
                    params.extend(plain.into_iter().map(|v| (name.to_string(), v)));
                    params.extend(list.into_iter().map(|v| (format!("{name}[]"), v)));
                }
                (bin, params)
            },
        )
}

/// Generated Bins (every section shape, standalone lines and inline tags, CRLF and tabs) with
/// hostile parameter values, each imported, loaded as `serve` loads it (so it must pass `check`)
/// and answered, must render what pystache and chevron render: the same document where the two
/// agree, one of theirs where they differ (they do on whitespace details the spec leaves to
/// implementations, e.g. pystache keeps a standalone line with a tab or a CRLF).
#[test]
fn generated_bins_render_as_pystache_and_chevron_do() {
    const CASES: usize = 400;
    let mut runner = TestRunner::new(Config::default());
    let strategy = generated_case();
    let dir = tempfile::tempdir().unwrap();
    for (set, files) in [
        ("primary", ["voice", "sms"]),
        ("fallback", ["voice", "sms"]),
    ] {
        std::fs::create_dir_all(dir.path().join(set)).unwrap();
        for file in files {
            let body = if file == "voice" {
                "<Response><Say>hi</Say></Response>"
            } else {
                "<Response><Message>hi</Message></Response>"
            };
            std::fs::write(dir.path().join(format!("{set}/{file}.xml")), body).unwrap();
        }
    }
    let settings = TemplateSettings::new(
        Default::default(),
        SCALARS
            .iter()
            .chain(&LISTS)
            .map(|n| n.to_string())
            .collect(),
    )
    .unwrap();
    let mut cases = Vec::new();
    let mut too_branchy = 0;
    for _ in 0..CASES {
        let (bin, params) = strategy.new_tree(&mut runner).unwrap().current();
        let imported = twiml_failover::authoring::bin::import(&bin)
            .unwrap_or_else(|e| panic!("import refused {bin:?}: {e:?}"));
        std::fs::write(dir.path().join("primary/bin.xml"), &imported.template).unwrap();
        let templates = match Templates::load(dir.path(), Role::Primary, &settings) {
            Ok(templates) => templates,
            // The check's bound on the ways through a template, not a translation problem.
            Err(e) if e.len() == 1 && e[0].message.contains("ways through the template") => {
                too_branchy += 1;
                continue;
            }
            Err(e) => panic!(
                "the import of {bin:?} does not load:\n{}\n{}",
                imported.template,
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let request: Params = params.iter().map(|(k, v)| (k, v)).collect();
        let answer = templates
            .answer("bin", Arc::new(request))
            .unwrap_or_else(|e| panic!("{bin:?} {params:?}: {e}"));
        assert!(
            answer.served_by == ServedBy::Primary && answer.degraded_from.is_none(),
            "{bin:?} {params:?}: {answer:?}"
        );
        cases.push((bin, params, imported.template, answer.twiml));
    }
    let jobs: Vec<(String, Vec<(&str, &str)>)> = cases
        .iter()
        .map(|(bin, params, ..)| {
            let params = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (bin.clone(), params)
        })
        .collect();
    let theirs = oracle(&jobs);
    let (mut agree, mut one) = (0, 0);
    for ((bin, params, template, ours), theirs) in cases.iter().zip(&theirs) {
        let ours_c = canonical(ours);
        let (py, ch) = match (&theirs.pystache, &theirs.chevron) {
            (Some(py), Some(ch)) => (canonical(py), canonical(ch)),
            (Some(one), None) | (None, Some(one)) => (canonical(one), canonical(one)),
            (None, None) => panic!("Bin {bin:?}: both oracles failed"),
        };
        if theirs.pystache.is_none() || theirs.chevron.is_none() {
            one += 1;
        }
        let context = || {
            format!(
                "Bin {bin:?}\nparams {params:?}\ntemplate {template:?}\nours     {ours:?}\n\
                 pystache {:?}\nchevron  {:?}",
                theirs.pystache, theirs.chevron
            )
        };
        // pystache is the oracle; chevron, where it agrees, a second opinion.
        let expected = if theirs.pystache.is_some() { &py } else { &ch };
        assert_eq!(&ours_c, expected, "{}", context());
        agree += usize::from(theirs.pystache.is_some() && theirs.chevron.is_some() && py == ch);
    }
    eprintln!(
        "{CASES} generated Bins: {too_branchy} over check's 64 ways; of the {} answered, pystache \
         and chevron agree on {agree}, one of them failed on {one}, and ours matches",
        cases.len()
    );
    assert!(
        too_branchy < CASES / 5,
        "{too_branchy} of {CASES} over 64 ways"
    );
    assert!(
        agree > CASES / 2,
        "only {agree} of {CASES} cases compared with both"
    );
}

/// Issue 24, point 6: `import-bin` says where `extra_params` goes; done exactly as it says in a copy
/// of the shipped config (whose last table is `[vars]`), `check` passes. Appended at the end
/// instead, the line would land in `[vars]` and fail: that is why the message says where.
#[test]
fn following_import_bins_extra_params_instruction_literally_passes_check() {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), &root.path().join("twiml-templates"));
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bins/simulring.xml");
    let (code, template, err) = common::run_bin(&["import-bin", bin.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Put this line in the config file above its first [table] (above [vars])"),
        "{err}"
    );
    let line = err.lines().last().unwrap();
    assert_eq!(line, "extra_params = [\"Dest\"]", "{err}");
    std::fs::write(
        root.path().join("twiml-templates/primary/ring.xml"),
        template,
    )
    .unwrap();
    let shipped = std::fs::read_to_string(common::example_config()).unwrap();
    let first_table = shipped
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .expect("the shipped config has a table");
    let mut lines: Vec<&str> = shipped.lines().collect();
    lines.insert(first_table, line);
    std::fs::write(
        root.path().join("twiml-failover.toml"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let (code, out, err) = common::run_bin_in(root.path(), &["check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        root.path().join("twiml-failover.toml"),
        format!("{shipped}{line}\n"),
    )
    .unwrap();
    let (code, out, err) = common::run_bin_in(root.path(), &["check"], &[]);
    assert_ne!(
        code, 0,
        "appended to [vars] it is not extra_params: {out}{err}"
    );
}

/// Issue 24, point 4: 100,000 nested sections are one problem at the section too deep, from the
/// binary too (the translation and what reads its output recurse per level); a template nested
/// past what the check judges is a problem of `check`, never a crash.
#[test]
fn deep_nesting_is_a_problem_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("deep.bin");
    let depth = 100_000;
    std::fs::write(
        &bin,
        format!(
            "<Response><Say>{}x{}</Say></Response>",
            "{{#a}}".repeat(depth),
            "{{/a}}".repeat(depth)
        ),
    )
    .unwrap();
    let (code, out, err) = common::run_bin(&["import-bin", bin.to_str().unwrap()], &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(":1:316: sections nest more than 50 deep here"),
        "{err}"
    );
    assert!(err.contains("1 problem(s); nothing converted"), "{err}");

    let root = tempfile::tempdir().unwrap();
    copy_dir(&shipped_templates(), root.path());
    let levels = 10_000;
    std::fs::write(
        root.path().join("primary/deep.xml"),
        format!(
            "<Response>{}<Say>x</Say>{}</Response>",
            "{% if Digits %}".repeat(levels),
            "{% endif %}".repeat(levels)
        ),
    )
    .unwrap();
    let templates = root.path().to_str().unwrap();
    let config = common::example_config();
    let (code, out, err) = common::run_bin(
        &[
            "check",
            "--templates",
            templates,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("primary/deep.xml:1:"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}
