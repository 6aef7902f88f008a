//! `twiml-failover check`: both roles' template sets loaded and judged as a server would load them,
//! every problem a `file:line:col` diagnostic.

use std::path::Path;

pub use super::files::{valid_name, Diagnostic};
pub use super::load::load_set;
use super::{Role, TemplateSettings};

/// The `check` command line that judges the templates under `root` with the config file `config`,
/// for error messages that suggest it.
pub fn command(root: &Path, config: Option<&Path>) -> String {
    let mut command = format!("twiml-failover check --templates {}", root.display());
    if let Some(file) = config {
        command.push_str(&format!(" --config {}", file.display()));
    }
    command
}

/// Checks both roles' directories under `root`, as `twiml-failover check` does.
pub fn check_all(root: &Path, settings: &TemplateSettings) -> Vec<Diagnostic> {
    let mut all = Vec::new();
    for role in [Role::Primary, Role::Fallback] {
        if let Err(d) = load_set(&root.join(role.as_str()), role, settings) {
            all.extend(d);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_with(
        files: &[(&str, &str)],
        role: Role,
    ) -> Result<super::super::TemplateSet, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        load_set(dir.path(), role, &TemplateSettings::default()).map_err(|d| {
            d.into_iter()
                .map(|d| {
                    let file = d
                        .file
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string();
                    format!("{file}:{}:{}: {}", d.line, d.col, d.message)
                })
                .collect()
        })
    }

    const VOICE: (&str, &str) = ("voice.xml", "<Response><Say>Hi {{ From }}</Say></Response>");
    const SMS: (&str, &str) = (
        "sms.xml",
        "<Response><Message>{{ Body }}</Message></Response>",
    );

    fn errors(files: &[(&str, &str)]) -> String {
        set_with(files, Role::Primary).unwrap_err().join("\n")
    }

    #[test]
    fn good_set_loads() {
        let set = set_with(
            &[
                VOICE,
                SMS,
                (
                    "menu/main.xml",
                    "{# the menu #}\n<?xml version=\"1.0\"?>\n<Response>\n{% if Digits == \"1\" %}\n  <Dial>{{ To }}</Dial>\n{% else %}\n  <Redirect>../voice</Redirect>\n{% endif %}\n</Response>\n",
                ),
            ],
            Role::Primary,
        )
        .unwrap();
        assert!(set.contains("menu/main"));
    }

    #[test]
    fn reports_positions_and_reasons() {
        let e = errors(&[
            VOICE,
            SMS,
            ("bad.xml", "<Response>\n  <Say>hi</Play>\n</Response>"),
        ]);
        assert!(e.contains("bad.xml:2:"), "{e}");
        assert!(e.contains("not well-formed"), "{e}");
        let e = errors(&[VOICE, ("sms.xml", "<Response>\n<Say>hi</Say></Response>")]);
        assert!(e.contains("sms.xml:2:1: <Say> is voice TwiML"), "{e}");
        let e = errors(&[
            VOICE,
            SMS,
            ("x.xml", "<Response><Say>{{ Form }}</Say></Response>"),
        ]);
        assert!(e.contains("x.xml:1:19: unknown variable \"Form\""), "{e}");
        let e = errors(&[
            VOICE,
            SMS,
            ("y.xml", "<Response><Say>{% if x %}</Say></Response>"),
        ]);
        assert!(
            e.contains("y.xml:1:") && e.contains("template syntax"),
            "{e}"
        );
        let e = errors(&[VOICE]);
        assert!(e.contains("missing entry point sms.xml"), "{e}");
        let e = errors(&[
            VOICE,
            SMS,
            (
                "l.xml",
                "<Response><Redirect>/nowhere</Redirect></Response>",
            ),
        ]);
        assert!(e.contains("leads to /nowhere"), "{e}");
        let e = errors(&[VOICE, SMS, ("bad name.xml", "<Response/>")]);
        assert!(e.contains("URL paths"), "{e}");
    }

    #[test]
    fn linked_templates_are_messaging() {
        let e = errors(&[
            VOICE,
            ("sms.xml", "<Response><Redirect>more</Redirect></Response>"),
            (
                "more.xml",
                "<Response><Redirect>sms</Redirect><Sya>x</Sya></Response>",
            ),
        ]);
        assert!(
            e.contains("more.xml:1:35: <Sya> is not a TwiML messaging element (allowed"),
            "{e}"
        );
    }

    #[test]
    fn rendered_output_is_checked() {
        // Unbalanced markup across branches only shows in some renders.
        let e = errors(&[
            VOICE,
            SMS,
            (
                "m.xml",
                "<Response>{% if Digits == \"1\" %}<Say>{% endif %}x{% if Digits == \"1\" %}</Say>{% endif %}<Say>{{ Digits }}</Say></Response>",
            ),
        ]);
        assert!(e.contains("m.xml"), "{e}");
    }

    #[test]
    fn fallback_refuses_dangling_links_too() {
        let e = set_with(
            &[
                VOICE,
                SMS,
                (
                    "l.xml",
                    "<Response><Redirect>/nowhere</Redirect></Response>",
                ),
            ],
            Role::Fallback,
        )
        .unwrap_err()
        .join("\n");
        assert!(
            e.contains("l.xml:1:21: <Redirect> leads to /nowhere"),
            "{e}"
        );
    }

    #[test]
    fn the_issue_example_names_the_raw_ampersand() {
        let e = errors(&[
            ("voice.xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Gather action=\"https://example.com/g?a=1&b=2\" numDigits=\"1\"><Say>Press 1</Say></Gather></Response>"),
            SMS,
        ]);
        assert!(
            e.contains("voice.xml:2:52: not well-formed XML: a raw `&`"),
            "{e}"
        );
    }

    #[test]
    fn a_render_out_of_budget_names_the_template_and_why() {
        let e = errors(&[
            VOICE,
            SMS,
            (
                "loop.xml",
                "<Response>\n{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}<Say>x</Say></Response>",
            ),
        ]);
        assert!(e.contains("loop.xml:"), "{e}");
        assert!(e.contains("ran out of its budget"), "{e}");
    }

    #[test]
    fn e164_of_a_missing_parameter_renders_empty() {
        assert!(set_with(
            &[
                VOICE,
                SMS,
                ("n.xml", "<Response><Say>{{ From | e164 }}</Say></Response>")
            ],
            Role::Primary
        )
        .is_ok());
    }
}
