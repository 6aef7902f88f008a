//! Loading one template directory and checking it whole: syntax, TwiML per channel, variables,
//! links, and renders with sample parameters. Every problem becomes a `file:line:col` diagnostic.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::Path;

use minijinja::value::Value;

use super::context::{messaging_samples, voice_samples, RenderContext, TWILIO_PARAMS};
use super::files::{dir_diagnostic, line_col, read_sources, Source};
pub use super::files::{valid_name, Diagnostic};
use super::twiml::{self, Channel, EXPRESSION_MARK};
use super::{new_environment, proof, Compiled, TemplateSet};
use crate::config::{Role, TemplateSettings};

/// Replaces template tags with same-length filler so XML positions stay those of the source:
/// `{{ expr }}` becomes a marker character (it prints something), `{% %}` and `{# #}` blanks.
fn blank_template_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let close = match tail.get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            Some("{#") => "#}",
            _ => {
                out.push('{');
                rest = &tail[1..];
                continue;
            }
        };
        let end = tail[2..].find(close).map_or(tail.len(), |i| i + 4);
        let tag = &tail[..end];
        let mut filler_len = tag.len();
        if close == "}}" {
            out.push(EXPRESSION_MARK);
            filler_len -= EXPRESSION_MARK.len_utf8();
        }
        for c in tag.chars() {
            if c == '\n' {
                out.push('\n');
                filler_len -= 1;
            }
        }
        out.extend(std::iter::repeat_n(' ', filler_len));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Resolves a link the way Twilio resolves a relative URL against the template's own URL, and
/// returns the template name it points at (`None` for absolute or dynamic URLs).
fn link_target(from: &str, target: &str) -> Option<String> {
    let target = target.trim();
    if target.is_empty() || target.contains(EXPRESSION_MARK) || target.contains("://") {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        return Some(from.to_string());
    }
    let mut segments: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        let mut base: Vec<&str> = from.split('/').collect();
        base.pop();
        base
    };
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Some(segments.join("/"))
}

fn is_messaging_root(name: &str) -> bool {
    name == "sms" || name.starts_with("sms/")
}

/// Loads the directory of one role and checks it; the set is returned only if nothing is wrong.
pub fn load_set(
    dir: &Path,
    role: Role,
    settings: &TemplateSettings,
) -> Result<TemplateSet, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    if !dir.is_dir() {
        return Err(vec![dir_diagnostic(
            dir,
            format!("the {} template directory is missing", role.as_str()),
        )]);
    }
    let sources = read_sources(dir, &mut diagnostics);
    let mut env = new_environment();
    let mut compiled = BTreeSet::new();
    for source in &sources {
        match env.add_template_owned(format!("{}.xml", source.name), source.text.clone()) {
            Ok(()) => {
                compiled.insert(source.name.clone());
            }
            Err(e) => {
                let offset = e.range().map_or_else(
                    || line_offset(&source.text, e.line().unwrap_or(1)),
                    |r| r.start,
                );
                let detail = e.detail().unwrap_or("syntax error");
                diagnostics.push(source.diagnostic(offset, format!("template syntax: {detail}")));
            }
        }
    }
    for entry in ["voice", "sms"] {
        if !sources.iter().any(|s| s.name == entry) {
            diagnostics.push(dir_diagnostic(
                &dir.join(format!("{entry}.xml")),
                format!("missing entry point {entry}.xml (the number's {entry} URL)"),
            ));
        }
    }

    // Pass 1: structure and links, to learn which templates answer messaging webhooks.
    let blanked: BTreeMap<&str, String> = sources
        .iter()
        .map(|s| (s.name.as_str(), blank_template_tags(&s.text)))
        .collect();
    let mut links: BTreeMap<&str, Vec<(usize, String)>> = BTreeMap::new();
    for source in &sources {
        let doc = lintable(source, &blanked[source.name.as_str()]);
        let report = twiml::lint(doc, None);
        links.insert(
            source.name.as_str(),
            report
                .links
                .into_iter()
                .filter_map(|l| link_target(&source.name, &l.target).map(|t| (l.offset, t)))
                .collect(),
        );
    }
    let messaging = messaging_closure(&sources, &links);

    let known: HashSet<&str> = TWILIO_PARAMS
        .iter()
        .copied()
        .chain(settings.vars.keys().map(String::as_str))
        .chain(settings.extra_params.iter().map(String::as_str))
        .chain(env.globals().map(|(name, _)| name))
        .collect();
    let globals: HashSet<String> = env.globals().map(|(n, _)| n.to_string()).collect();
    let vars = std::sync::Arc::new(settings.vars.clone());

    for source in &sources {
        let name = source.name.as_str();
        let channel = if messaging.contains(name) {
            Channel::Messaging
        } else {
            Channel::Voice
        };
        // Pass 2: TwiML rules for the template's channel, on the source itself.
        let doc = lintable(source, &blanked[name]);
        let shift = blanked[name].len() - doc.len();
        if source.text.starts_with('\u{FEFF}') {
            diagnostics
                .push(source.diagnostic(0, "byte order mark before the XML (Twilio error 12100)"));
        }
        let before = diagnostics.len();
        for p in twiml::lint(doc, Some(channel)).problems {
            diagnostics.push(source.diagnostic(p.offset + shift, p.message));
        }
        let source_is_clean = diagnostics.len() == before;
        for (offset, target) in &links[name] {
            if role == Role::Primary && !sources.iter().any(|s| &s.name == target) {
                diagnostics.push(source.diagnostic(
                    offset + shift,
                    format!("links to /{target}, which has no template in this set"),
                ));
            }
        }
        if !compiled.contains(name) {
            continue;
        }
        let Ok(template) = env.get_template(&format!("{name}.xml")) else {
            continue;
        };
        // Variables: a name Twilio never sends and the config does not define is a typo.
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !known.contains(v.as_str()) && !globals.contains(v))
            .collect();
        unknown.sort();
        for var in unknown {
            let offset = find_variable(&source.text, &var).unwrap_or(0);
            diagnostics.push(source.diagnostic(
                offset,
                format!(
                    "unknown variable {var:?}: not a Twilio parameter, not in [vars], not in \
                     extra_params"
                ),
            ));
        }
        // Rendering a template whose source is already wrong would only repeat the same problem.
        if !source_is_clean {
            continue;
        }
        // Pass 3: render with sample parameters, including hostile ones, and check the output.
        let samples = match channel {
            Channel::Voice => voice_samples(),
            Channel::Messaging => messaging_samples(),
        };
        for sample in samples {
            let ctx = Value::from_object(RenderContext::new(
                vars.clone(),
                std::sync::Arc::new(sample),
            ));
            let rendered = match template.render(&ctx) {
                Ok(out) => out,
                Err(e) => {
                    let offset = line_offset(&source.text, e.line().unwrap_or(1));
                    diagnostics.push(source.diagnostic(
                        offset,
                        format!(
                            "render with sample parameters failed: {}",
                            e.detail().unwrap_or("error")
                        ),
                    ));
                    break;
                }
            };
            let rendered = rendered.trim_start();
            if rendered.len() > twiml::MAX_DOCUMENT_BYTES {
                diagnostics.push(source.diagnostic(
                    0,
                    format!(
                        "renders to {} bytes, over Twilio's 64 kB limit (error 11750)",
                        rendered.len()
                    ),
                ));
                break;
            }
            if let Some(p) = twiml::lint(rendered, Some(channel))
                .problems
                .into_iter()
                .next()
            {
                let (line, col) = line_col(rendered, p.offset);
                diagnostics.push(source.diagnostic(
                    0,
                    format!(
                        "output rendered with sample parameters, at {line}:{col}: {}",
                        p.message
                    ),
                ));
                break;
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(TemplateSet {
            env,
            // The engine knows each template by its file name; requests ask by path.
            names: sources
                .iter()
                .filter(|s| compiled.contains(&s.name))
                .map(|s| {
                    let compiled = Compiled {
                        file: format!("{}.xml", s.name),
                        proven: proof::always_well_formed(&s.text, super::syntax()),
                    };
                    (s.name.clone(), compiled)
                })
                .collect(),
            dir: dir.to_path_buf(),
        })
    } else {
        Err(diagnostics)
    }
}

/// The part of a blanked source to lint: leading blanks left by template tags are not in the
/// output (renders are trimmed), while real leading whitespace is reported.
fn lintable<'a>(source: &Source, blanked: &'a str) -> &'a str {
    if source.text.starts_with('{') {
        blanked.trim_start()
    } else {
        blanked
    }
}

fn line_offset(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

fn find_variable(text: &str, var: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(var) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + var.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !ident(before) && !ident(after) {
            return Some(at);
        }
        from = at + var.len();
    }
    None
}

/// `sms.xml`, everything under `sms/`, and every template those link to answer messaging webhooks.
fn messaging_closure<'a>(
    sources: &'a [Source],
    links: &BTreeMap<&'a str, Vec<(usize, String)>>,
) -> HashSet<&'a str> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = sources
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| is_messaging_root(n))
        .collect();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        for (_, target) in links.get(name).into_iter().flatten() {
            if let Some(s) = sources.iter().find(|s| &s.name == target) {
                queue.push_back(s.name.as_str());
            }
        }
    }
    seen
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

    fn set_with(files: &[(&str, &str)], role: Role) -> Result<TemplateSet, Vec<String>> {
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
        assert!(e.contains("sms.xml:2:1: <Say> is a voice verb"), "{e}");
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
        let e = errors(&[VOICE, SMS, ("z.xml", " <Response/>")]);
        assert!(e.contains("z.xml:1:1: whitespace before"), "{e}");
        let e = errors(&[
            VOICE,
            SMS,
            (
                "l.xml",
                "<Response><Redirect>/nowhere</Redirect></Response>",
            ),
        ]);
        assert!(e.contains("links to /nowhere"), "{e}");
        let e = errors(&[VOICE, SMS, ("bad name.xml", "<Response/>")]);
        assert!(e.contains("URL paths"), "{e}");
    }

    #[test]
    fn linked_templates_are_messaging() {
        let e = errors(&[
            VOICE,
            ("sms.xml", "<Response><Redirect>more</Redirect></Response>"),
            ("more.xml", "<Response><Play>x.mp3</Play></Response>"),
        ]);
        assert!(e.contains("more.xml:1:11: <Play> is a voice verb"), "{e}");
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
    fn fallback_allows_dangling_links() {
        assert!(set_with(
            &[
                VOICE,
                SMS,
                (
                    "l.xml",
                    "<Response><Redirect>/nowhere</Redirect></Response>"
                )
            ],
            Role::Fallback
        )
        .is_ok());
    }

    #[test]
    fn resolves_links_like_twilio() {
        assert_eq!(link_target("voice", "menu").as_deref(), Some("menu"));
        assert_eq!(link_target("a/b", "c?x=1").as_deref(), Some("a/c"));
        assert_eq!(link_target("a/b", "/c#ct=1").as_deref(), Some("c"));
        assert_eq!(link_target("a/b", "../c").as_deref(), Some("c"));
        assert_eq!(link_target("a/b", "https://x/y"), None);
        assert_eq!(link_target("a/b", ""), None);
    }

    #[test]
    fn blanking_keeps_offsets() {
        let s = "<a>{{ x }}</a>{% if y %}\n{# c #}";
        let b = blank_template_tags(s);
        assert_eq!(b.len(), s.len());
        assert_eq!(b.find("</a>"), s.find("</a>"));
        assert!(b.contains(EXPRESSION_MARK));
    }
}
