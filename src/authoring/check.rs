//! `twiml-failover check`: both roles' template sets loaded and judged as a server would load them,
//! every problem a `file:line:col` diagnostic; and the warnings that do not stop a set loading.

use std::path::Path;

use crate::templates::lint::size;
use crate::templates::{load_set, merge_repeats, read_sources};
use crate::templates::{Diagnostic, TemplateSettings};
use crate::twilio::Role;

/// Checks both roles' directories under `root`, as `twiml-failover check` does; a problem found in
/// several places is one diagnostic ([`merge_repeats`]).
pub fn check_all(root: &Path, settings: &TemplateSettings) -> Vec<Diagnostic> {
    let mut all = Vec::new();
    for role in [Role::Primary, Role::Fallback] {
        if let Err(d) = load_set(&root.join(role.as_str()), role, settings) {
            all.extend(d);
        }
    }
    merge_repeats(all)
}

/// What `check` warns about in both roles' directories under `root` without refusing the set:
/// loops that can write more than Twilio's 64 kB ([`size`]).
pub fn warnings_all(root: &Path, settings: &TemplateSettings) -> Vec<Diagnostic> {
    let mut all = Vec::new();
    for role in [Role::Primary, Role::Fallback] {
        // Problems reading a file are `check_all`'s to report.
        let mut unread = Vec::new();
        for source in read_sources(&root.join(role.as_str()), &mut unread) {
            let Ok(loops) = size::oversize_loops(&source.text, &settings.vars) else {
                continue;
            };
            all.extend(
                loops
                    .into_iter()
                    .map(|o| source.diagnostic(o.offset, o.message)),
            );
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
        vars: &[(&str, &str)],
    ) -> Result<crate::templates::TemplateSet, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut settings = TemplateSettings::default();
        settings
            .vars
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        load_set(dir.path(), role, &settings).map_err(|d| {
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
        set_with(files, Role::Primary, &[]).unwrap_err().join("\n")
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
            &[],
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
    fn errors_name_what_is_open_where_and_the_fix() {
        let e = errors(&[
            VOICE,
            SMS,
            (
                "say.xml",
                "<Response>\n  <Say>Hello\n  <Pause/>\n</Response>\n",
            ),
        ]);
        assert!(
            e.contains(
                "say.xml:4:1: not well-formed XML: `</Response>` stands where `<Say>` is still \
                 open: close `<Say>` first with `</Say>` (it was opened at 2:3)"
            ),
            "{e}"
        );
        let e = errors(&[
            VOICE,
            SMS,
            (
                "if.xml",
                "<Response>\n{% if Digits %}\n  <Say>x</Say>\n</Response>\n",
            ),
        ]);
        assert!(
            e.contains("`{% if Digits %}` (opened at 2:1) is never closed: add `{% endif %}`"),
            "{e}"
        );
        let e = errors(&[
            VOICE,
            SMS,
            (
                "for.xml",
                "<Response>{% for d in Digits | each %}{% if d %}<Say/>{% endfor %}</Response>",
            ),
        ]);
        assert!(
            e.contains(
                "for.xml:1:55: template syntax: `{% endfor %}` stands where `{% if d %}` (opened \
                 at 1:39) is still open: close it first with `{% endif %}`"
            ),
            "{e}"
        );
        let e = errors(&[
            VOICE,
            SMS,
            (
                "f.xml",
                "<Response>\n  <Say>{{ From | uper }}</Say>\n</Response>",
            ),
        ]);
        assert!(
            e.contains(
                "f.xml:2:18: unknown filter `uper`; did you mean `upper`? The filters are: abs,"
            ),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = set_with(
            &[
                VOICE,
                SMS,
                ("v.xml", "<Response><Say>{{ compnay }}</Say></Response>"),
            ],
            Role::Primary,
            &[("company", "Example")],
        )
        .unwrap_err()
        .join("\n");
        assert!(
            e.contains("v.xml:1:19: unknown variable \"compnay\""),
            "{e}"
        );
        assert!(e.ends_with("did you mean `company`?"), "{e}");
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
            &[],
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
    fn sip_header_parameters_are_known_by_their_prefix() {
        let ok = set_with(
            &[
                VOICE,
                SMS,
                (
                    "s.xml",
                    "<Response><Say>{{ SipHeader_X_Account }} {{ DialSipHeader_X_Reason }}</Say></Response>",
                ),
            ],
            Role::Primary,
            &[],
        );
        assert!(ok.is_ok(), "{ok:?}");
        let e = errors(&[
            VOICE,
            SMS,
            ("s.xml", "<Response><Say>{{ SipHeaderX }}</Say></Response>"),
        ]);
        assert!(e.contains("unknown variable \"SipHeaderX\""), "{e}");
    }

    #[test]
    fn typed_attributes_holding_expressions_are_judged_per_answer() {
        // `numDigits` is a whole number; `{{ Digits }}` renders empty or hostile with the samples,
        // which `check` must not hold against the template (issue 12, point 3).
        let set = set_with(
            &[
                VOICE,
                SMS,
                (
                    "g.xml",
                    "<Response><Gather numDigits=\"{{ Digits }}\" timeout=\"{{ Body }}\" \
                     method=\"{{ From }}\"><Say>x</Say></Gather></Response>",
                ),
            ],
            Role::Primary,
            &[],
        );
        assert!(set.is_ok(), "{set:?}");
        let e = errors(&[
            VOICE,
            SMS,
            ("g.xml", "<Response><Gather numDigits=\"x{{ Digits }}\"/><Gather numDigits=\"abc\"/></Response>"),
        ]);
        assert!(e.contains("g.xml:1:"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn e164_of_a_missing_parameter_renders_empty() {
        assert!(set_with(
            &[
                VOICE,
                SMS,
                ("n.xml", "<Response><Say>{{ From | e164 }}</Say></Response>")
            ],
            Role::Primary,
            &[]
        )
        .is_ok());
    }
}
