//! Template tests: the file format (`<templates>/tests/*.toml`) and the runner `twiml-failover test`
//! uses. A case sends one webhook and checks the answer; a flow follows a call the way Twilio would
//! (the call, then its `<Gather action>` with the digits pressed, then a `<Redirect>`), resolving
//! each relative link as the lint does. Pure: takes the file's text and loaded templates, returns
//! the results; answers come from [`preview::answer`], the server's own path.
//!
//! ```toml
//! [[case]]
//! name = "a call hears the menu"
//! role = "primary"                 # or "fallback" [default: primary]
//! path = "/voice"
//! params = { CallSid = "CA1", From = "+15550100" }
//! verbs = ["Gather", "Say", "Redirect"]
//! says = ["press 1"]
//! gather = "menu"
//!
//! [[flow]]
//! name = "press 1 reaches an agent"
//! params = { CallSid = "CA1", From = "+15550100" }   # sent with every step
//! [[flow.step]]
//! path = "/voice"
//! [[flow.step]]
//! follow = "gather"
//! params = { Digits = "1" }
//! says = ["agent"]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::preview::{self, Outcome, Request};
use crate::templates::lint::links::{self, Target};
use crate::templates::Templates;
use crate::twilio::Role;
use crate::webhook::Params;

/// One test file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Single webhooks.
    #[serde(default)]
    pub case: Vec<Case>,
    /// Calls followed over several webhooks.
    #[serde(default)]
    pub flow: Vec<Flow>,
}

/// A parameter's value: one, or several sent under the same name in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// `Name = "value"`.
    One(String),
    /// `"Dest[]" = ["+1555…", "+1555…"]`.
    Many(Vec<String>),
}

/// What an answer must be; every field given is checked.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Expect {
    /// HTTP status `serve` answers [default: 200].
    pub status: Option<u16>,
    /// Which template answered: `primary`, `fallback`, or the fallback set's `voice`/`sms`.
    pub served_by: Option<String>,
    /// The exact document (whitespace around it ignored).
    pub document: Option<String>,
    /// The verbs directly inside `<Response>`, in order.
    pub verbs: Option<Vec<String>>,
    /// Texts each found in some `<Say>` or `<Message>`.
    pub says: Option<Vec<String>>,
    /// Where the `<Gather>` leads: a template name (links resolved), or the absolute URL.
    pub gather: Option<String>,
    /// Where the `<Redirect>` leads, like `gather`.
    pub redirect: Option<String>,
}

/// A single webhook and what it must answer.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// `primary` or `fallback` [default: primary].
    pub role: Option<String>,
    /// The path Twilio requests, optionally with a query.
    pub path: String,
    /// The request's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// What the answer must be.
    #[serde(flatten)]
    pub expect: Expect,
}

/// A call followed step by step.
#[derive(Debug, Deserialize)]
pub struct Flow {
    /// Shown in the report.
    pub name: String,
    /// `primary` or `fallback` [default: primary].
    pub role: Option<String>,
    /// Sent with every step (the call's own parameters), before the step's.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// The webhooks, in order.
    pub step: Vec<Step>,
}

/// One webhook of a flow: a path, or the link of the previous answer to follow.
#[derive(Debug, Deserialize)]
pub struct Step {
    /// A path, as in a case (the first step needs one).
    pub path: Option<String>,
    /// The previous answer's verb whose link Twilio requests next: `gather` (its `action`, with
    /// the digits pressed), `redirect`, `dial` or `record` (their `action`).
    pub follow: Option<String>,
    /// Added to the flow's parameters for this step (`Digits`, `SpeechResult`, ...).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// What the answer must be.
    #[serde(flatten)]
    pub expect: Expect,
}

/// The result of one case or flow.
#[derive(Debug)]
pub struct Result {
    /// The case's or flow's name.
    pub name: String,
    /// Why it failed, one entry per problem; empty when it passed.
    pub problems: Vec<String>,
}

/// The keys an expectation may have (serde's `flatten` cannot refuse unknown keys itself).
const EXPECT_KEYS: &[&str] = &[
    "status",
    "served_by",
    "document",
    "verbs",
    "says",
    "gather",
    "redirect",
];

/// Parses a test file; a key the format does not have is an error, so a typo never passes.
pub fn parse(text: &str) -> std::result::Result<File, String> {
    let raw: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let tables = |key: &str| -> Vec<&toml::Table> {
        raw.get(key)
            .and_then(toml::Value::as_array)
            .map(|items| items.iter().filter_map(toml::Value::as_table).collect())
            .unwrap_or_default()
    };
    let unknown = |kind: &str, table: &toml::Table, own: &[&str]| {
        table
            .keys()
            .find(|k| !own.contains(&k.as_str()) && !EXPECT_KEYS.contains(&k.as_str()))
            .map(|k| format!("[[{kind}]] has no key {k:?}"))
    };
    for case in tables("case") {
        if let Some(e) = unknown("case", case, &["name", "role", "path", "params"]) {
            return Err(e);
        }
    }
    for flow in tables("flow") {
        let own = ["name", "role", "params", "step"];
        if let Some(k) = flow.keys().find(|k| !own.contains(&k.as_str())) {
            return Err(format!("[[flow]] has no key {k:?}"));
        }
        let steps = flow.get("step").and_then(toml::Value::as_array);
        for step in steps
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_table)
        {
            if let Some(e) = unknown("flow.step", step, &["path", "follow", "params"]) {
                return Err(e);
            }
        }
    }
    let file: File = raw.try_into().map_err(|e: toml::de::Error| e.to_string())?;
    if file.case.is_empty() && file.flow.is_empty() {
        return Err("no [[case]] or [[flow]]".into());
    }
    Ok(file)
}

/// The roles a file's cases and flows use (each loaded once by the caller).
pub fn roles(file: &File) -> std::result::Result<Vec<Role>, String> {
    let mut roles = Vec::new();
    let names = file
        .case
        .iter()
        .map(|c| (&c.name, &c.role))
        .chain(file.flow.iter().map(|f| (&f.name, &f.role)));
    for (name, role) in names {
        let role = parse_role(role.as_deref()).map_err(|e| format!("{name}: {e}"))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn parse_role(raw: Option<&str>) -> std::result::Result<Role, String> {
    match raw.unwrap_or("primary") {
        "primary" => Ok(Role::Primary),
        "fallback" => Ok(Role::Fallback),
        other => Err(format!("role {other:?} is not primary or fallback")),
    }
}

/// Runs every case and flow of `file`; `templates` gives the loaded templates of a role.
pub fn run<'t>(file: &File, templates: &dyn Fn(Role) -> &'t Templates) -> Vec<Result> {
    let mut results = Vec::new();
    for case in &file.case {
        let mut problems = Vec::new();
        match parse_role(case.role.as_deref()) {
            Ok(role) => {
                let body = params(&case.params);
                match Request::new("", &case.path, &body) {
                    Ok(request) => {
                        let outcome = preview::answer(templates(role), &request);
                        problems = judge(&case.expect, &request.name, &outcome);
                    }
                    Err(e) => problems.push(format!("path: {e}")),
                }
            }
            Err(e) => problems.push(e),
        }
        results.push(Result {
            name: case.name.clone(),
            problems,
        });
    }
    for flow in &file.flow {
        let problems = match parse_role(flow.role.as_deref()) {
            Ok(role) => run_flow(flow, templates(role)),
            Err(e) => vec![e],
        };
        results.push(Result {
            name: flow.name.clone(),
            problems,
        });
    }
    results
}

fn params(values: &BTreeMap<String, Value>) -> Params {
    let mut params = Params::new();
    add_params(&mut params, values);
    params
}

fn add_params(params: &mut Params, values: &BTreeMap<String, Value>) {
    for (name, value) in values {
        match value {
            Value::One(v) => params.push(name, v),
            Value::Many(vs) => vs.iter().for_each(|v| params.push(name, v)),
        }
    }
}

/// Follows a flow; stops at its first failing step (later steps would follow a wrong answer).
fn run_flow(flow: &Flow, templates: &Templates) -> Vec<String> {
    let mut previous: Option<(String, String)> = None;
    for (i, step) in flow.step.iter().enumerate() {
        let at = format!("step {}", i + 1);
        let mut body = params(&flow.params);
        add_params(&mut body, &step.params);
        let (from, link) = match (&step.path, step.follow.as_deref(), &previous) {
            (Some(path), None, _) => (String::new(), path.clone()),
            (None, Some(verb), Some((name, twiml))) if FOLLOWED.iter().any(|f| f.0 == verb) => {
                match Answer::read(twiml).and_then(|a| a.link(verb, name)) {
                    Ok(link) => (name.clone(), link),
                    Err(e) => return vec![format!("{at}: follow = {verb:?}: {e}")],
                }
            }
            (None, Some(_), None) => {
                return vec![format!("{at}: nothing to follow yet; give the first step a path")]
            }
            _ => {
                return vec![format!(
                    "{at}: give either path or follow = \"gather\" | \"redirect\" | \"dial\" | \"record\""
                )]
            }
        };
        let request = match Request::new(&from, &link, &body) {
            Ok(request) => request,
            Err(e) => return vec![format!("{at}: {e}")],
        };
        let outcome = preview::answer(templates, &request);
        let problems = judge(&step.expect, &request.name, &outcome);
        if !problems.is_empty() {
            return problems
                .into_iter()
                .map(|p| format!("{at} ({}): {p}", request.name))
                .collect();
        }
        match outcome.twiml {
            Some(twiml) => previous = Some((request.name, twiml)),
            None if i + 1 < flow.step.len() => {
                return vec![format!(
                    "{at} ({}): answered {} without TwiML; nothing to follow",
                    request.name, outcome.status
                )]
            }
            None => {}
        }
    }
    Vec::new()
}

/// The verbs a flow can follow: Twilio requests their `action` (the `<Redirect>`'s text) next.
const FOLLOWED: &[(&str, &str)] = &[
    ("gather", "Gather"),
    ("redirect", "Redirect"),
    ("dial", "Dial"),
    ("record", "Record"),
];

/// The parts of an answer the expectations look at.
struct Answer {
    verbs: Vec<String>,
    says: Vec<String>,
    /// Per followable verb (by its `follow` name), the link of its first element, when present.
    links: Vec<(&'static str, String)>,
}

impl Answer {
    fn read(twiml: &str) -> std::result::Result<Answer, String> {
        let doc = roxmltree::Document::parse(twiml).map_err(|e| e.to_string())?;
        let root = doc.root_element();
        let verbs = root
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name().to_string())
            .collect();
        let text = |n: roxmltree::Node| -> String {
            n.descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect()
        };
        let named = |tag: &'static str| root.descendants().filter(move |n| n.has_tag_name(tag));
        let says = named("Say").chain(named("Message")).map(text).collect();
        // Without `action`, Twilio requests the URL that answered again.
        let links = FOLLOWED
            .iter()
            .filter_map(|&(follow, tag)| {
                let node = named(tag).next()?;
                let link = match tag {
                    "Redirect" => text(node).trim().to_string(),
                    _ => node.attribute("action").unwrap_or("").to_string(),
                };
                Some((follow, link))
            })
            .collect();
        Ok(Answer { verbs, says, links })
    }

    /// The link a `<Gather>` or `<Redirect>` of the answer from template `from` follows.
    fn link(&self, follow: &str, from: &str) -> std::result::Result<String, String> {
        match self.find(follow) {
            Some("") => Ok(format!("/{from}")),
            Some(link) => Ok(link.to_string()),
            None => {
                let tag = FOLLOWED
                    .iter()
                    .find(|f| f.0 == follow)
                    .map_or(follow, |f| f.1);
                Err(format!("the answer has no <{tag}>"))
            }
        }
    }

    fn find(&self, follow: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.0 == follow)
            .map(|l| l.1.as_str())
    }

    /// Where a link leads: a template name, or the URL when it leaves the set.
    fn leads_to(link: &str, from: &str) -> String {
        if link.is_empty() {
            return from.to_string();
        }
        match links::resolve(from, link) {
            Target::Template(name) => name,
            Target::Outside => link.to_string(),
        }
    }
}

/// Every problem of `outcome` against `expect`.
fn judge(expect: &Expect, name: &str, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let status = expect.status.unwrap_or(200);
    if outcome.status != status {
        problems.push(format!(
            "status: expected {status}, got {}",
            outcome.describe(name)
        ));
        return problems;
    }
    if let Some(by) = &expect.served_by {
        if outcome.served_by != Some(by.as_str()) {
            problems.push(format!(
                "served_by: expected {by:?}, got {}",
                outcome.describe(name)
            ));
        }
    }
    let Some(twiml) = &outcome.twiml else {
        return problems;
    };
    if let Some(expected) = &expect.document {
        if expected.trim() != twiml.trim() {
            problems.push(format!(
                "document differs:\n{}",
                diff(expected.trim(), twiml.trim())
            ));
        }
    }
    let answer = match Answer::read(twiml) {
        Ok(answer) => answer,
        Err(e) => {
            problems.push(format!("the answer does not parse: {e}"));
            return problems;
        }
    };
    if let Some(verbs) = &expect.verbs {
        if *verbs != answer.verbs {
            problems.push(format!("verbs: expected {verbs:?}, got {:?}", answer.verbs));
        }
    }
    for text in expect.says.iter().flatten() {
        if !answer.says.iter().any(|s| s.contains(text.as_str())) {
            problems.push(format!(
                "says: no <Say> or <Message> contains {text:?}; they say {:?}",
                answer.says
            ));
        }
    }
    for (verb, expected) in [("gather", &expect.gather), ("redirect", &expect.redirect)] {
        let Some(expected) = expected else { continue };
        match answer.find(verb) {
            None => problems.push(format!(
                "{verb}: expected {expected:?}, the answer has none"
            )),
            Some(link) => {
                let leads = Answer::leads_to(link, name);
                let link = link.to_string();
                if leads != *expected {
                    problems.push(format!(
                        "{verb}: expected it to lead to {expected:?}, it leads to {leads:?} ({link:?})"
                    ));
                }
            }
        }
    }
    problems
}

/// A line diff: `-` expected, `+` rendered.
fn diff(expected: &str, got: &str) -> String {
    let mut out = String::new();
    let text = similar::TextDiff::from_lines(expected, got);
    for change in text.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        let line = change.value();
        let _ = write!(out, "    {sign} {}", line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::TemplateSettings;

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A menu: 1 reaches sales, anything else hears the menu again.
    fn ivr() -> (tempfile::TempDir, Templates) {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("primary");
        write(
            &p,
            "voice.xml",
            "<Response>\n<Gather action=\"menu\" numDigits=\"1\"><Say>Press 1 for sales.</Say></Gather>\n<Redirect>voice</Redirect>\n</Response>\n",
        );
        write(
            &p,
            "menu.xml",
            "<Response>\n{% if Digits == \"1\" %}\n<Say>Sales, {{ From }}.</Say>\n{% else %}\n<Redirect>voice</Redirect>\n{% endif %}\n</Response>\n",
        );
        write(&p, "sms.xml", "<Response><Message>Hi</Message></Response>");
        let f = root.path().join("fallback");
        write(&f, "voice.xml", "<Response><Say>Sorry.</Say></Response>");
        write(
            &f,
            "sms.xml",
            "<Response><Message>Sorry.</Message></Response>",
        );
        let t = Templates::load(root.path(), Role::Primary, &TemplateSettings::default()).unwrap();
        (root, t)
    }

    fn run_text(text: &str) -> Vec<Result> {
        let (_root, t) = ivr();
        let file = parse(text).unwrap();
        run(&file, &|_| &t)
    }

    #[test]
    fn a_flow_follows_gather_and_redirect() {
        let results = run_text(
            r#"
            [[flow]]
            name = "1 reaches sales, 2 hears the menu again"
            params = { CallSid = "CA1", From = "+15550100" }
            [[flow.step]]
            path = "/voice"
            verbs = ["Gather", "Redirect"]
            says = ["Press 1"]
            gather = "menu"
            [[flow.step]]
            follow = "gather"
            params = { Digits = "1" }
            says = ["Sales, +15550100."]
            document = "<Response>\n<Say>Sales, +15550100.</Say>\n</Response>"
            [[flow]]
            name = "2"
            params = { CallSid = "CA1" }
            [[flow.step]]
            path = "/voice"
            [[flow.step]]
            follow = "gather"
            params = { Digits = "2" }
            redirect = "voice"
            [[flow.step]]
            follow = "redirect"
            served_by = "primary"
            verbs = ["Gather", "Redirect"]
            "#,
        );
        for r in &results {
            assert!(r.problems.is_empty(), "{}: {:?}", r.name, r.problems);
        }
    }

    #[test]
    fn failures_say_what_differs() {
        let results = run_text(
            r#"
            [[case]]
            name = "wrong"
            path = "/menu"
            params = { CallSid = "CA1", Digits = "1", From = "+1" }
            verbs = ["Dial"]
            says = ["Support"]
            document = "<Response>\n<Say>Sales, +2.</Say>\n</Response>"
            [[case]]
            name = "missing"
            path = "/nope"
            [[flow]]
            name = "follows nothing"
            [[flow.step]]
            path = "/menu"
            params = { Digits = "1" }
            [[flow.step]]
            follow = "gather"
            "#,
        );
        let wrong = &results[0].problems;
        assert!(wrong[0].contains("document differs"), "{wrong:?}");
        assert!(
            wrong[0].contains("-     <Say>Sales, +2.</Say>")
                || wrong[0].contains("- <Say>Sales, +2.</Say>"),
            "{}",
            wrong[0]
        );
        assert!(wrong[0].contains("+ <Say>Sales, +1.</Say>"), "{}", wrong[0]);
        assert!(
            wrong[1].contains("verbs: expected [\"Dial\"], got [\"Say\"]"),
            "{wrong:?}"
        );
        assert!(wrong[2].contains("says: no <Say>"), "{wrong:?}");
        assert!(
            results[1].problems[0].contains("404"),
            "{:?}",
            results[1].problems
        );
        assert!(
            results[2].problems[0]
                .contains("step 2: follow = \"gather\": the answer has no <Gather>"),
            "{:?}",
            results[2].problems
        );
    }

    #[test]
    fn files_are_strict() {
        assert!(parse("").is_err());
        assert!(parse("[[case]]\nname = \"x\"\npath = \"/voice\"\nsay = [\"typo\"]\n").is_err());
        let file = parse("[[case]]\nname = \"x\"\nrole = \"backup\"\npath = \"/voice\"\n").unwrap();
        assert!(roles(&file).is_err());
    }
}
