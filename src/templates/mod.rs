//! TwiML templates: load a role's directory, lint it whole, and render answers with every value escaped.
//! This is what `serve` runs; the commands that help write templates (`check`, `render`, `test`,
//! `import-bin`) are [`crate::authoring`]'s.
//!
//! Templates use MiniJinja syntax (`{{ From }}`, `{% if Digits == "1" %}`), which matches TwiML Bins
//! for variables. A set is only ever built complete and checked: a server swaps whole [`Templates`]
//! values, so a request never sees half a set and a bad set never replaces a good one.

pub mod context;
pub mod escape;
mod files;
pub mod lint;
mod load;
mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};

use crate::twilio::{document, xml, Role};
use crate::webhook::Params;
pub use context::{RenderContext, Vars};
pub(crate) use files::{line_col, read_sources};
pub use files::{merge_repeats, valid_name, Diagnostic, MAX_TEMPLATE_FILE_BYTES};
pub use load::load_set;
pub(crate) use settings::is_name;
pub use settings::TemplateSettings;

/// Instruction budget of one render; bounds loops in a template (normal templates use a few hundred).
pub(crate) const RENDER_FUEL: u64 = 20_000;

/// A compiled, checked set of templates from one directory (`primary/` or `fallback/`).
pub struct TemplateSet {
    env: Environment<'static>,
    /// Template name (URL path) → how the engine knows it.
    names: HashMap<String, Compiled>,
    dir: PathBuf,
}

/// One template of a set.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// The file name the engine knows it by.
    pub(crate) file: String,
    /// Every answer is well-formed whatever the values ([`lint::proof`]): no parse per answer.
    pub(crate) proven: bool,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet")
            .field("dir", &self.dir)
            .field("names", &self.names)
            .finish()
    }
}

/// Why a render produced no usable TwiML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template engine failed (bad filter input, fuel exhausted, ...).
    #[error("template error: {0}")]
    Engine(String),
    /// The output is not TwiML Twilio could parse.
    #[error("rendered TwiML is not well-formed: {0}")]
    NotWellFormed(String),
    /// The output is over Twilio's 64 kB limit.
    #[error("rendered TwiML is {0} bytes, over Twilio's 64 kB limit")]
    TooLarge(usize),
    /// No template of that name.
    #[error("no template {0:?}")]
    Missing(String),
}

/// The template syntax: MiniJinja's delimiters, with block tags taking their line's whitespace.
pub(crate) fn syntax() -> SyntaxConfig {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("default delimiters are valid")
}

/// The filters a template may use: MiniJinja's built-ins (less `safe`, and `escape`/`e`, which the
/// check refuses because their output is not escaped again), and this project's `e164` and `each`.
/// What `check` lists when a template names another.
pub const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e164",
    "each",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// Builds the MiniJinja environment every set uses: XML escaping of every value, lenient undefined
/// values (a parameter Twilio did not send renders empty), bounded fuel, and no `safe` filter.
pub(crate) fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_syntax(syntax());
    // `safe` would let a template print caller input unescaped; nothing legitimate needs it.
    env.remove_filter("safe");
    env.add_filter("e164", e164);
    env.add_filter("each", each);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() || value.is_none() {
            return Ok(());
        }
        // Every value is escaped, even one marked safe (`escape`, `tojson`, a macro): the check
        // refuses those, and the answer proof (`lint::proof`) may only assume escaped values.
        let written = if let Some(s) = value.as_str() {
            escape::escape_to(out, s)
        } else {
            escape::escape_to(out, &value.to_string())
        };
        written.map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
    });
    env
}

/// The `e164` filter of TwiML Bins: the `+digits` number inside a SIP URI or phone string; empty
/// for a parameter Twilio did not send, as every missing value renders.
fn e164(value: &Value) -> String {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None if value.is_undefined() || value.is_none() => return String::new(),
        None => value.to_string(),
    };
    let value = text.as_str();
    let Some(start) = value.find('+') else {
        return String::new();
    };
    let digits: String = value[start + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if (1..=15).contains(&digits.len()) {
        format!("+{digits}")
    } else {
        String::new()
    }
}

/// The `each` filter: what a TwiML Bin section (`{{#Name}}`, `{{#each Name}}`) iterates, as
/// Mustache does: a list (`Name[]` sent several times) item by item, any other true value once as
/// itself (one `Name=Jane` is one pass, never one per letter), and nothing for a false one (a
/// parameter not sent, an empty value). `import-bin` writes it into every loop it translates.
fn each(value: &Value) -> Value {
    if value.kind() == minijinja::value::ValueKind::Seq {
        return value.clone();
    }
    if value.is_true() {
        Value::from(vec![value.clone()])
    } else {
        Value::from(Vec::<Value>::new())
    }
}

impl TemplateSet {
    /// True when the set has a template for `name` (a URL path without the leading `/`).
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The names of every template in the set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// True when every answer of template `name` is proven well-formed at load, so rendering it
    /// skips the strict parse; false when it is parsed per answer (or there is no such template).
    pub fn is_proven(&self, name: &str) -> bool {
        self.names.get(name).is_some_and(|c| c.proven)
    }

    /// Renders `name` with `ctx` and checks the result is TwiML Twilio will accept.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let Some(compiled) = self.names.get(name) else {
            return Err(RenderError::Missing(name.to_string()));
        };
        let template = self
            .env
            .get_template(&compiled.file)
            .map_err(|e| RenderError::Engine(e.to_string()))?;
        let out = template
            .render(ctx)
            .map_err(|e| RenderError::Engine(e.to_string()))?;
        // A template that starts with a `{% ... %}` line leaves blank space; Twilio rejects it (12100).
        let out = match out.find(|c: char| !c.is_whitespace()) {
            Some(0) => out,
            Some(i) => out[i..].to_string(),
            None => out,
        };
        if out.len() > document::MAX_DOCUMENT_BYTES {
            return Err(RenderError::TooLarge(out.len()));
        }
        // An answer of a proven template is well-formed whatever its values (`lint::proof`); any
        // other passes the strict parser: its markup can break on a path no check foresaw, and a
        // malformed fallback is the one thing that must never reach Twilio.
        if compiled.proven {
            return Ok(out);
        }
        if let Err(e) = xml::parse(&out) {
            return Err(RenderError::NotWellFormed(e.message));
        }
        Ok(out)
    }
}

/// Which template produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// The primary set, as asked.
    Primary,
    /// The fallback set's template of the same name.
    Fallback,
    /// The fallback set's channel default (`voice` or `sms`) for a path it has no template for.
    FallbackDefault(&'static str),
}

impl ServedBy {
    /// The label the request log line and `render` give the template that answered.
    pub fn label(self) -> &'static str {
        match self {
            ServedBy::Primary => "primary",
            ServedBy::Fallback => "fallback",
            ServedBy::FallbackDefault(default) => default,
        }
    }
}

/// The `check` command line that judges the templates under `root` with the config file `config`:
/// a load that fails names it, so the operator can see the same problems again without a server.
pub fn check_command(root: &Path, config: Option<&Path>) -> String {
    let mut command = format!("twiml-failover check --templates {}", root.display());
    if let Some(file) = config {
        command.push_str(&format!(" --config {}", file.display()));
    }
    command
}

/// A rendered answer and where it came from.
#[derive(Debug)]
pub struct Answer {
    /// The TwiML document.
    pub twiml: String,
    /// Which template produced it.
    pub served_by: ServedBy,
    /// When a template failed first and another answered, what went wrong.
    pub degraded_from: Option<RenderError>,
}

/// Why no TwiML could be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No template serves this path (404).
    #[error("no template for this path")]
    NotFound,
    /// Every candidate template failed (503, so Twilio moves on to the fallback URL).
    #[error("{0}")]
    Failed(RenderError),
}

/// The templates one server answers from: its role's set, and for a primary also the fallback set
/// it degrades to when a primary template fails at run time.
#[derive(Debug)]
pub struct Templates {
    role: Role,
    primary: Option<TemplateSet>,
    fallback: TemplateSet,
    vars: Vars,
}

impl Templates {
    /// Loads and checks the sets `role` needs from `root`; any problem refuses the whole load.
    pub fn load(
        root: &Path,
        role: Role,
        settings: &TemplateSettings,
    ) -> Result<Templates, Vec<Diagnostic>> {
        let fallback = load::load_set(&root.join("fallback"), Role::Fallback, settings);
        let primary = match role {
            Role::Primary => Some(load::load_set(
                &root.join("primary"),
                Role::Primary,
                settings,
            )),
            Role::Fallback => None,
        };
        let mut problems = Vec::new();
        let fallback = fallback.map_err(|d| problems.extend(d));
        let primary = primary.map(|p| p.map_err(|d| problems.extend(d)));
        match (primary, fallback) {
            (None, Ok(fallback)) => Ok(Templates {
                role,
                primary: None,
                fallback,
                vars: context::vars(&settings.vars),
            }),
            (Some(Ok(primary)), Ok(fallback)) => Ok(Templates {
                role,
                primary: Some(primary),
                fallback,
                vars: context::vars(&settings.vars),
            }),
            _ => Err(merge_repeats(problems)),
        }
    }

    /// The role these templates serve.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The set answering requests first.
    pub fn active_set(&self) -> &TemplateSet {
        self.primary.as_ref().unwrap_or(&self.fallback)
    }

    /// Renders the answer for the path `name`, degrading to the fallback set as the role prescribes.
    pub fn answer(&self, name: &str, params: Arc<Params>) -> Result<Answer, AnswerError> {
        let ctx = Value::from_object(RenderContext::new(self.vars.clone(), params.clone()));
        if let Some(primary) = &self.primary {
            return match primary.render(name, &ctx) {
                Ok(twiml) => Ok(Answer {
                    twiml,
                    served_by: ServedBy::Primary,
                    degraded_from: None,
                }),
                Err(RenderError::Missing(_)) => Err(AnswerError::NotFound),
                Err(first) => self
                    .fallback_answer(name, channel_default(&params), &ctx)
                    .map(|mut a| {
                        a.degraded_from = Some(first.clone());
                        a
                    })
                    .map_err(|_| AnswerError::Failed(first)),
            };
        }
        self.fallback_answer(name, channel_default(&params), &ctx)
    }

    /// The local answer when the upstream's could not be used (upstream mode): the primary
    /// template of the same name when there is one, else what a primary template that failed at
    /// run time gets (the fallback set's template of that name, else the channel default).
    pub fn answer_locally(&self, name: &str, params: Arc<Params>) -> Result<Answer, AnswerError> {
        match &self.primary {
            Some(primary) if !primary.contains(name) => {
                let channel_default = channel_default(&params);
                let ctx = Value::from_object(RenderContext::new(self.vars.clone(), params));
                self.fallback_answer(name, channel_default, &ctx)
            }
            _ => self.answer(name, params),
        }
    }

    fn fallback_answer(
        &self,
        name: &str,
        channel_default: Option<&'static str>,
        ctx: &Value,
    ) -> Result<Answer, AnswerError> {
        let mut degraded_from = None;
        if self.fallback.contains(name) {
            match self.fallback.render(name, ctx) {
                Ok(twiml) => {
                    return Ok(Answer {
                        twiml,
                        served_by: ServedBy::Fallback,
                        degraded_from: None,
                    })
                }
                Err(e) => degraded_from = Some(e),
            }
        }
        let Some(default) = channel_default.filter(|d| *d != name || degraded_from.is_none())
        else {
            return Err(match degraded_from {
                Some(e) => AnswerError::Failed(e),
                None => AnswerError::NotFound,
            });
        };
        match self.fallback.render(default, ctx) {
            Ok(twiml) => Ok(Answer {
                twiml,
                served_by: ServedBy::FallbackDefault(default),
                degraded_from,
            }),
            Err(e) => Err(AnswerError::Failed(degraded_from.unwrap_or(e))),
        }
    }
}

/// The fallback set's entry point for a request's channel: `voice` with a CallSid, `sms` with a
/// MessageSid.
fn channel_default(params: &Params) -> Option<&'static str> {
    if params.get("CallSid").is_some() {
        Some("voice")
    } else if params.get("MessageSid").is_some() {
        Some("sms")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn sample_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("primary");
        let f = root.path().join("fallback");
        write(
            &p,
            "voice.xml",
            "<Response><Say>Hello {{ From }}</Say></Response>",
        );
        write(
            &p,
            "sms.xml",
            "<Response><Message>You said: {{ Body }}</Message></Response>",
        );
        write(
            &p,
            "broken.xml",
            "<Response><Say>{% if Digits == \"42\" %}{{ Digits | int // 0 }}{% endif %}</Say></Response>",
        );
        write(
            &f,
            "voice.xml",
            "<Response><Say>Sorry. {{ company }}</Say></Response>",
        );
        write(
            &f,
            "sms.xml",
            "<Response><Message>Got it</Message></Response>",
        );
        write(
            &f,
            "broken.xml",
            "<Response><Say>fallback broken</Say></Response>",
        );
        root
    }

    fn settings() -> TemplateSettings {
        let mut s = TemplateSettings::default();
        s.vars.insert("company".into(), "Acme & Co".into());
        s
    }

    fn params(list: &[(&str, &str)]) -> Arc<Params> {
        Arc::new(list.iter().copied().collect())
    }

    #[test]
    fn escapes_caller_input() {
        let root = sample_root();
        let t = Templates::load(root.path(), Role::Primary, &settings()).unwrap();
        let body = "</Message><Redirect>http://evil.example/</Redirect><Message>";
        let a = t
            .answer("sms", params(&[("MessageSid", "SM1"), ("Body", body)]))
            .unwrap();
        assert_eq!(
            a.twiml,
            "<Response><Message>You said: &lt;/Message&gt;&lt;Redirect&gt;http://evil.example/\
             &lt;/Redirect&gt;&lt;Message&gt;</Message></Response>"
        );
        assert_eq!(a.served_by, ServedBy::Primary);
    }

    #[test]
    fn primary_degrades_to_fallback_on_render_failure() {
        let root = sample_root();
        let t = Templates::load(root.path(), Role::Primary, &settings()).unwrap();
        let a = t
            .answer("broken", params(&[("CallSid", "CA1"), ("Digits", "42")]))
            .unwrap();
        assert_eq!(a.served_by, ServedBy::Fallback);
        assert!(a.twiml.contains("fallback broken"));
        assert!(matches!(a.degraded_from, Some(RenderError::Engine(_))));
        assert_eq!(
            t.answer("nope", params(&[("CallSid", "CA1")])).unwrap_err(),
            AnswerError::NotFound
        );
    }

    #[test]
    fn fallback_uses_channel_defaults() {
        let root = sample_root();
        let t = Templates::load(root.path(), Role::Fallback, &settings()).unwrap();
        let a = t.answer("menu", params(&[("CallSid", "CA1")])).unwrap();
        assert_eq!(a.served_by, ServedBy::FallbackDefault("voice"));
        assert_eq!(
            a.twiml,
            "<Response><Say>Sorry. Acme &amp; Co</Say></Response>"
        );
        let a = t.answer("a/b", params(&[("MessageSid", "SM1")])).unwrap();
        assert_eq!(a.served_by, ServedBy::FallbackDefault("sms"));
        assert_eq!(
            t.answer("menu", params(&[])).unwrap_err(),
            AnswerError::NotFound
        );
    }

    #[test]
    fn vars_win_over_parameters_and_safe_is_gone() {
        let root = sample_root();
        let t = Templates::load(root.path(), Role::Fallback, &settings()).unwrap();
        let a = t
            .answer(
                "voice",
                params(&[("CallSid", "CA1"), ("company", "<Evil/>")]),
            )
            .unwrap();
        assert!(a.twiml.contains("Acme &amp; Co"));
        let env = new_environment();
        assert!(env.render_str("{{ x | safe }}", ()).is_err());
    }

    #[test]
    fn a_name_sent_with_brackets_is_a_list_of_escaped_values() {
        let env = new_environment();
        let ctx = Value::from_object(RenderContext::new(
            Arc::new(Default::default()),
            params(&[("Dest[]", "+1"), ("Other", "x"), ("Dest[]", "<b>")]),
        ));
        let out = env
            .render_str(
                "{% for d in Dest %}<Number>{{ d }}</Number>{% endfor %}",
                ctx.clone(),
            )
            .unwrap();
        assert_eq!(out, "<Number>+1</Number><Number>&lt;b&gt;</Number>");
        let out = env
            .render_str("[{% for d in Nope %}x{% endfor %}]", ctx)
            .unwrap();
        assert_eq!(out, "[]");
    }

    #[test]
    fn each_iterates_a_list_and_passes_once_over_one_value() {
        let env = new_environment();
        let ctx = Value::from_object(RenderContext::new(
            Arc::new(Default::default()),
            params(&[
                ("Name", "Jane"),
                ("Empty", ""),
                ("Dest[]", "+1"),
                ("Dest[]", ""),
                ("Dest[]", "<b>"),
            ]),
        ));
        let render = |t: &str| env.render_str(t, ctx.clone()).unwrap();
        assert_eq!(
            render("{% for n in Name | each %}Thank you, {{ n }}.{% endfor %}"),
            "Thank you, Jane."
        );
        assert_eq!(
            render("{% for d in Dest | each %}[{{ d }}]{% endfor %}"),
            "[+1][][&lt;b&gt;]"
        );
        // The bound `check` suggests for a loop per value.
        assert_eq!(
            render("{% for d in (Dest | each)[:2] %}[{{ d }}]{% endfor %}"),
            "[+1][]"
        );
        for missing in ["Empty", "Nope"] {
            assert_eq!(
                render(&format!(
                    "{{% for x in {missing} | each %}}x{{% else %}}none{{% endfor %}}"
                )),
                "none"
            );
        }
    }

    #[test]
    fn filters_lists_what_the_environment_has() {
        let env = new_environment();
        let kind = |name: &str| {
            env.render_str(&format!("{{{{ 1 | {name} }}}}"), ())
                .err()
                .map(|e| e.kind())
        };
        for name in FILTERS.iter().chain(&["escape", "e"]) {
            assert_ne!(
                kind(name),
                Some(minijinja::ErrorKind::UnknownFilter),
                "{name}"
            );
        }
        for name in ["safe", "tojson", "urlencode", "uper"] {
            assert_eq!(
                kind(name),
                Some(minijinja::ErrorKind::UnknownFilter),
                "{name}"
            );
        }
    }

    #[test]
    fn e164_extracts_numbers() {
        assert_eq!(
            e164(&Value::from("sip:+15125551212@x.sip.us1.twilio.com")),
            "+15125551212"
        );
        assert_eq!(e164(&Value::from("+15550100")), "+15550100");
        assert_eq!(e164(&Value::from("anonymous")), "");
        assert_eq!(e164(&Value::UNDEFINED), "");
        let env = new_environment();
        assert_eq!(env.render_str("[{{ From | e164 }}]", ()).unwrap(), "[]");
    }
}
