//! Loading one template set, in phases: read the files, compile them, lint the set, check the
//! variables, render each template with sample parameters, build the set. Reading is the only I/O
//! ([`super::files`]); the judging is [`super::lint`]'s.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};

use super::context::{
    messaging_samples, voice_samples, RenderContext, TWILIO_PARAMS, TWILIO_PARAM_PREFIXES,
};
use super::files::{dir_diagnostic, line_col, read_sources, Diagnostic, Source};
use super::lint::{paths, proof, set::lint_set};
use super::TemplateSettings;
use super::{new_environment, Compiled, TemplateSet, FILTERS, RENDER_FUEL};
use crate::twilio::document::{self, did_you_mean};
use crate::twilio::{Channel, Role};

/// Loads the directory of one role and checks it; the set is returned only if nothing is wrong.
pub fn load_set(
    dir: &Path,
    role: Role,
    settings: &TemplateSettings,
) -> Result<TemplateSet, Vec<Diagnostic>> {
    if !dir.is_dir() {
        return Err(vec![dir_diagnostic(
            dir,
            format!("the {} template directory is missing", role.as_str()),
        )]);
    }
    let mut diagnostics = Vec::new();
    let sources = read_sources(dir, &mut diagnostics);
    entry_points(dir, &sources, &mut diagnostics);
    let (env, compiled) = compile(&sources, &mut diagnostics);
    let channels = lint(&sources, &compiled, &mut diagnostics);
    unknown_variables(&env, &sources, &compiled, settings, &mut diagnostics);
    let clean: Vec<&Source> = sources
        .iter()
        .filter(|s| compiled.contains(&s.name))
        .filter(|s| !diagnostics.iter().any(|d| d.file == s.path))
        .collect();
    for source in clean {
        let channel = channels.get(&source.name).and_then(|c| match c.as_slice() {
            [one] => Some(*one),
            _ => None,
        });
        render_samples(&env, source, channel, settings, &mut diagnostics);
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    Ok(TemplateSet {
        env,
        // The engine knows each template by its file name; requests ask by path.
        names: sources
            .iter()
            .map(|s| {
                let file = format!("{}.xml", s.name);
                let proven = proof::prove(&s.text).is_ok();
                (s.name.clone(), Compiled { file, proven })
            })
            .collect(),
        dir: dir.to_path_buf(),
    })
}

/// A set needs `voice.xml` and `sms.xml`: the number's voice and messaging URLs.
fn entry_points(dir: &Path, sources: &[Source], diagnostics: &mut Vec<Diagnostic>) {
    for entry in ["voice", "sms"] {
        if !sources.iter().any(|s| s.name == entry) {
            diagnostics.push(dir_diagnostic(
                &dir.join(format!("{entry}.xml")),
                format!("missing entry point {entry}.xml (the number's {entry} URL)"),
            ));
        }
    }
}

/// Compiles every source into one environment; syntax errors become diagnostics.
fn compile(
    sources: &[Source],
    diagnostics: &mut Vec<Diagnostic>,
) -> (Environment<'static>, BTreeSet<String>) {
    let mut env = new_environment();
    let mut compiled = BTreeSet::new();
    for source in sources {
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
                // The engine says a block ends wrong, not which block: the scanner knows.
                let (offset, detail) = match paths::open_block(&source.text) {
                    Some(b)
                        if detail.contains("unexpected end")
                            || detail.contains("statement end") =>
                    {
                        let (line, col) = line_col(&source.text, b.offset);
                        let end = b.end;
                        match b.stray {
                            Some((at, stray)) => (
                                at,
                                format!(
                                    "`{{% {stray} %}}` stands where `{{% {} %}}` (opened at \
                                     {line}:{col}) is still open: close it first with \
                                     `{{% end{end} %}}`",
                                    b.statement
                                ),
                            ),
                            None => (
                                offset,
                                format!(
                                    "`{{% {} %}}` (opened at {line}:{col}) is never closed: add \
                                     `{{% end{end} %}}` where its block ends",
                                    b.statement
                                ),
                            ),
                        }
                    }
                    _ => (offset, detail.to_string()),
                };
                diagnostics.push(source.diagnostic(offset, format!("template syntax: {detail}")));
            }
        }
    }
    unknown_filters(sources, &compiled, diagnostics);
    (env, compiled)
}

/// A filter the environment does not have is found where it is written, not when a render
/// happens to reach it; the message lists the filters there are.
fn unknown_filters(
    sources: &[Source],
    compiled: &BTreeSet<String>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for source in sources.iter().filter(|s| compiled.contains(&s.name)) {
        let Ok(used) = paths::filters(&source.text) else {
            continue;
        };
        for (offset, name) in used {
            // `escape` exists; the lint refuses it with its own reason.
            if FILTERS.contains(&name) || matches!(name, "escape" | "e") {
                continue;
            }
            let hint = did_you_mean(name, FILTERS)
                .map(|f| format!("did you mean `{f}`? "))
                .unwrap_or_default();
            diagnostics.push(source.diagnostic(
                offset,
                format!(
                    "unknown filter `{name}`; {hint}The filters are: {}",
                    FILTERS.join(", ")
                ),
            ));
        }
    }
}

/// Lints the set; a template that did not compile is reported once, by the compiler.
fn lint(
    sources: &[Source],
    compiled: &BTreeSet<String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Vec<Channel>> {
    let texts: Vec<(&str, &str)> = sources
        .iter()
        .map(|s| (s.name.as_str(), s.text.as_str()))
        .collect();
    let report = lint_set(&texts);
    for f in report.findings {
        if !compiled.contains(&f.template) {
            continue;
        }
        if let Some(source) = sources.iter().find(|s| s.name == f.template) {
            diagnostics.push(source.diagnostic(f.offset, f.message));
        }
    }
    report.channels
}

/// A name Twilio never sends and the config does not define is a typo.
fn unknown_variables(
    env: &Environment<'static>,
    sources: &[Source],
    compiled: &BTreeSet<String>,
    settings: &TemplateSettings,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let known: HashSet<&str> = TWILIO_PARAMS
        .iter()
        .copied()
        .chain(settings.vars.keys().map(String::as_str))
        .chain(settings.extra_params.iter().map(String::as_str))
        .chain(env.globals().map(|(name, _)| name))
        .collect();
    // Sorted, so that of two names as close to a typo the suggestion is always the same.
    let mut candidates: Vec<&str> = known.iter().copied().collect();
    candidates.sort_unstable();
    for source in sources.iter().filter(|s| compiled.contains(&s.name)) {
        let Ok(template) = env.get_template(&format!("{}.xml", source.name)) else {
            continue;
        };
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !known.contains(v.as_str()))
            .filter(|v| !TWILIO_PARAM_PREFIXES.iter().any(|p| v.starts_with(p)))
            .collect();
        unknown.sort();
        for var in unknown {
            let offset = find_variable(&source.text, &var).unwrap_or(0);
            let fix = match did_you_mean(&var, &candidates) {
                Some(name) => format!("did you mean `{name}`?"),
                None => format!(
                    "give it a value under [vars] in the config file (`{var} = \"...\"`), or list \
                     it in extra_params if the request itself sends it"
                ),
            };
            let mut diagnostic = source.diagnostic(
                offset,
                format!(
                    "unknown variable {var:?}: not a Twilio parameter, not in [vars], not in \
                     extra_params; {fix}"
                ),
            );
            diagnostic.one_fix = Some(format!("variable {var}"));
            diagnostics.push(diagnostic);
        }
    }
}

/// Renders a template with sample parameters, hostile ones included, and checks each answer as a
/// request would: the engine must not fail and the output must be well-formed XML.
fn render_samples(
    env: &Environment<'static>,
    source: &Source,
    channel: Option<Channel>,
    settings: &TemplateSettings,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Ok(template) = env.get_template(&format!("{}.xml", source.name)) else {
        return;
    };
    let samples = match channel {
        Some(Channel::Messaging) => messaging_samples(),
        _ => voice_samples(),
    };
    let vars = super::context::vars(&settings.vars);
    for sample in samples {
        let ctx = Value::from_object(RenderContext::new(vars.clone(), Arc::new(sample)));
        let rendered = match template.render(&ctx) {
            Ok(out) => out,
            Err(e) => {
                let offset = line_offset(&source.text, e.line().unwrap_or(1));
                let why = if e.kind() == ErrorKind::OutOfFuel {
                    format!(
                        "rendering ran out of its budget ({RENDER_FUEL} steps) with sample \
                         parameters: a loop runs too long"
                    )
                } else {
                    format!(
                        "render with sample parameters failed: {}",
                        e.detail().unwrap_or("error")
                    )
                };
                diagnostics.push(source.diagnostic(offset, why));
                return;
            }
        };
        let rendered = rendered.trim_start();
        // Structure was judged on every path; here what values do to it: well-formedness only
        // (an empty `{{ Digits }}` in a `<say-as>` is the parameter's absence, not a template bug).
        if let Some(p) = document::check(rendered, None).problems.into_iter().next() {
            let (line, col) = line_col(rendered, p.offset);
            diagnostics.push(source.diagnostic(
                0,
                format!(
                    "output rendered with sample parameters, at {line}:{col}: {}",
                    p.message
                ),
            ));
            return;
        }
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
