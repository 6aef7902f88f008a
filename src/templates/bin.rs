//! `import-bin`: a TwiML Bin translated into this project's template syntax. Pure.
//!
//! Bins are Mustache templates with Handlebars-style helpers, as Twilio documents them (support
//! article "How to use templates with TwiML Bins"; blog posts "Introducing Templates for TwiML Bins",
//! 2016-10, and "Building More Powerful Voice Applications With Enhanced TwiML Bins Templates",
//! 2017-02): `{{Name}}` inserts a request parameter, `{{#Name}}…{{/Name}}` renders when it is set
//! (once per value when it is a list, `{{.}}` being the value), `{{^Name}}…{{/Name}}` when it is
//! not, `{{#each Dest}}…{{this}}…{{/each}}` iterates over a list parameter (`Dest[]=…` sent several
//! times), `{{#if}}`/`{{#unless}}`/`{{else}}` choose, and `{{#e164}}{{To}}{{/e164}}` extracts the
//! E.164 number. What has no faithful translation here is refused with its line and column:
//! unescaped output (`{{{x}}}`, `{{&x}}`; every value is escaped here), partials, changed delimiters,
//! dotted names, and text that would read as this project's own `{%`/`{#` syntax.

use super::context::TWILIO_PARAMS;
use super::files::line_col;
use super::settings::is_name;

/// Why a Bin cannot be translated, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// What cannot be translated, and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// A translated Bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The template text.
    pub template: String,
    /// Parameters it reads that Twilio does not send on its own (custom query parameters such as
    /// `Dest`): `check` accepts them once they are listed in the config's `extra_params`.
    pub custom_params: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `{{#name}}`: a list is iterated, anything else is a condition.
    Section,
    /// `{{^name}}`.
    Inverted,
    /// `{{#each name}}`.
    Each,
    /// `{{#if name}}`.
    If,
    /// `{{#unless name}}`.
    Unless,
}

#[derive(Debug)]
enum Node {
    Text(usize, usize),
    Var(String, usize),
    Block {
        kind: Kind,
        name: String,
        at: usize,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug)]
enum Token {
    Text(usize, usize),
    Var(String, usize),
    Open(Kind, String, usize),
    Else(usize),
    Close(String, usize),
}

/// Words the template language reserves; a parameter so named cannot be written as a variable.
const RESERVED: &[&str] = &[
    "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor", "true",
    "false", "none", "True", "False", "None", "loop", "self", "set", "with", "macro", "block",
    "e164",
];

/// Translates `bin`; every problem is reported, not only the first.
pub fn import(bin: &str) -> Result<Imported, Vec<Problem>> {
    let mut problems = Vec::new();
    let problem = |at: usize, message: String| {
        let (line, col) = line_col(bin, at);
        Problem { line, col, message }
    };
    let tokens = scan(bin, &mut |at, m| problems.push(problem(at, m)));
    let mut at = 0;
    let tree = build(&tokens, &mut at, None, &mut |at, m| {
        problems.push(problem(at, m))
    });
    let mut out = Emitter {
        bin,
        out: String::new(),
        loops: Vec::new(),
        custom: Vec::new(),
        problems: Vec::new(),
    };
    out.nodes(&tree);
    problems.extend(out.problems.into_iter().map(|(at, m)| problem(at, m)));
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.col));
        return Err(problems);
    }
    let mut custom = out.custom;
    custom.sort();
    custom.dedup();
    Ok(Imported {
        template: out.out,
        custom_params: custom,
    })
}

fn scan(bin: &str, problem: &mut dyn FnMut(usize, String)) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < bin.len() {
        let Some(open) = bin[pos..].find("{{").map(|i| pos + i) else {
            tokens.push(Token::Text(pos, bin.len()));
            break;
        };
        if open > pos {
            tokens.push(Token::Text(pos, open));
        }
        if bin[open..].starts_with("{{{") {
            let end = bin[open..].find("}}}").map_or(bin.len(), |i| open + i + 3);
            problem(
                open,
                "`{{{…}}}` writes a value unescaped; every value is escaped here: write `{{Name}}`"
                    .into(),
            );
            pos = end;
            continue;
        }
        let Some(close) = bin[open + 2..].find("}}").map(|i| open + 2 + i) else {
            problem(open, "`{{` is never closed by `}}`".into());
            break;
        };
        pos = close + 2;
        let inner = bin[open + 2..close].trim();
        let (sigil, rest) = match inner.chars().next() {
            Some(c @ ('#' | '^' | '/' | '!' | '&' | '>' | '=')) => (Some(c), inner[1..].trim()),
            _ => (None, inner),
        };
        match sigil {
            Some('!') => {}
            Some('&') => problem(
                open,
                "`{{&…}}` writes a value unescaped; every value is escaped here: write `{{Name}}`"
                    .into(),
            ),
            Some('>') => problem(
                open,
                "partials (`{{>…}}`) are not part of TwiML Bins".into(),
            ),
            Some('=') => problem(
                open,
                "changed delimiters (`{{=…=}}`) cannot be translated; use `{{` and `}}`".into(),
            ),
            Some('#') => {
                let (kind, name) = match rest.split_once(char::is_whitespace) {
                    Some(("each", name)) => (Kind::Each, name.trim()),
                    Some(("if", name)) => (Kind::If, name.trim()),
                    Some(("unless", name)) => (Kind::Unless, name.trim()),
                    _ => (Kind::Section, rest),
                };
                tokens.push(Token::Open(kind, name.to_string(), open));
            }
            Some('^') => tokens.push(Token::Open(Kind::Inverted, rest.to_string(), open)),
            Some('/') => tokens.push(Token::Close(rest.to_string(), open)),
            _ if inner == "else" => tokens.push(Token::Else(open)),
            _ => tokens.push(Token::Var(inner.to_string(), open)),
        }
    }
    tokens
}

/// Builds the block tree up to the close of `open` (the section's name and kind).
fn build(
    tokens: &[Token],
    at: &mut usize,
    open: Option<(Kind, &str, usize)>,
    problem: &mut dyn FnMut(usize, String),
) -> Vec<Node> {
    let mut body = Vec::new();
    while let Some(token) = tokens.get(*at) {
        *at += 1;
        match token {
            Token::Text(a, b) => body.push(Node::Text(*a, *b)),
            Token::Var(name, off) => body.push(Node::Var(name.clone(), *off)),
            Token::Open(kind, name, off) => {
                let inner = build(tokens, at, Some((*kind, name, *off)), problem);
                let mut otherwise = Vec::new();
                // `{{else}}` splits an if/unless/each: what `build` returned stopped at it.
                if matches!(tokens.get(at.wrapping_sub(1)), Some(Token::Else(_))) {
                    otherwise = build(tokens, at, Some((*kind, name, *off)), problem);
                }
                body.push(Node::Block {
                    kind: *kind,
                    name: name.clone(),
                    at: *off,
                    body: inner,
                    otherwise,
                });
            }
            Token::Else(off) => {
                if open.is_none() {
                    problem(*off, "`{{else}}` outside a block".into());
                }
                return body;
            }
            Token::Close(name, off) => {
                let expected = match open {
                    Some((Kind::Each, ..)) => "each",
                    Some((Kind::If, ..)) => "if",
                    Some((Kind::Unless, ..)) => "unless",
                    Some((_, name, _)) => name,
                    None => {
                        problem(*off, format!("`{{{{/{name}}}}}` closes nothing"));
                        continue;
                    }
                };
                if name != expected {
                    problem(
                        *off,
                        format!(
                            "`{{{{/{name}}}}}` closes `{expected}`: write `{{{{/{expected}}}}}`"
                        ),
                    );
                }
                return body;
            }
        }
    }
    if let Some((_, name, off)) = open {
        problem(off, format!("`{name}` is never closed"));
    }
    body
}

struct Emitter<'a> {
    bin: &'a str,
    out: String,
    /// Loop variables of the enclosing lists, innermost last.
    loops: Vec<String>,
    custom: Vec<String>,
    problems: Vec<(usize, String)>,
}

impl Emitter<'_> {
    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.node(node);
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Text(a, b) => {
                let text = &self.bin[*a..*b];
                for mark in ["{%", "{#"] {
                    if let Some(i) = text.find(mark) {
                        self.problems.push((
                            a + i,
                            format!("`{mark}` in the text would read as template syntax here"),
                        ));
                    }
                }
                self.out.push_str(text);
            }
            Node::Var(name, at) => {
                let name = if name == "." || name == "this" {
                    match self.loops.last() {
                        Some(var) => var.clone(),
                        None => {
                            self.problems
                                .push((*at, format!("`{{{{{name}}}}}` outside a list section")));
                            return;
                        }
                    }
                } else {
                    match self.name(name, *at) {
                        Some(name) => name,
                        None => return,
                    }
                };
                self.out.push_str(&format!("{{{{ {name} }}}}"));
            }
            Node::Block {
                kind: Kind::Section,
                name,
                at,
                body,
                ..
            } if name == "e164" => {
                let vars: Vec<&Node> = body
                    .iter()
                    .filter(
                        |n| !matches!(n, Node::Text(a, b) if self.bin[*a..*b].trim().is_empty()),
                    )
                    .collect();
                match vars.as_slice() {
                    [Node::Var(var, var_at)] if var != "." && var != "this" => {
                        if let Some(var) = self.name(var, *var_at) {
                            self.out.push_str(&format!("{{{{ {var} | e164 }}}}"));
                        }
                    }
                    _ => self.problems.push((
                        *at,
                        "`{{#e164}}` must hold one parameter, as in `{{#e164}}{{To}}{{/e164}}`"
                            .into(),
                    )),
                }
            }
            Node::Block {
                kind,
                name,
                at,
                body,
                otherwise,
            } => {
                let Some(name) = self.name(name, *at) else {
                    return;
                };
                let looped = match kind {
                    Kind::Each => true,
                    Kind::Section => uses_item(body),
                    _ => false,
                };
                if looped {
                    let var = format!("{name}_item");
                    self.out.push_str(&format!("{{% for {var} in {name} %}}"));
                    self.loops.push(var);
                    self.nodes(body);
                    self.loops.pop();
                    if !otherwise.is_empty() {
                        self.out.push_str("{% else %}");
                        self.nodes(otherwise);
                    }
                    self.out.push_str("{% endfor %}");
                } else {
                    let negate = matches!(kind, Kind::Inverted | Kind::Unless);
                    let not = if negate { "not " } else { "" };
                    self.out.push_str(&format!("{{% if {not}{name} %}}"));
                    self.nodes(body);
                    if !otherwise.is_empty() {
                        self.out.push_str("{% else %}");
                        self.nodes(otherwise);
                    }
                    self.out.push_str("{% endif %}");
                }
            }
        }
    }

    /// A parameter name as a template variable, or a problem.
    fn name(&mut self, name: &str, at: usize) -> Option<String> {
        if !is_name(name) {
            let why = if name.contains('.') {
                "dotted names reach into objects, and request parameters are text"
            } else {
                "only letters, digits and `_` make a parameter name here"
            };
            self.problems
                .push((at, format!("`{name}` cannot be translated: {why}")));
            return None;
        }
        if RESERVED.contains(&name) {
            self.problems.push((
                at,
                format!("`{name}` is a reserved word of the template language"),
            ));
            return None;
        }
        if !TWILIO_PARAMS.contains(&name) {
            self.custom.push(name.to_string());
        }
        Some(name.to_string())
    }
}

/// True when a section's own body writes the current value (`{{.}}`): the section is a list.
fn uses_item(body: &[Node]) -> bool {
    body.iter().any(|n| match n {
        Node::Var(name, _) => name == "." || name == "this",
        // Conditions keep the value; another list section has its own.
        Node::Block {
            kind: Kind::If | Kind::Unless | Kind::Inverted,
            body,
            otherwise,
            ..
        } => uses_item(body) || uses_item(otherwise),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bin: &str) -> String {
        import(bin).unwrap_or_else(|e| panic!("{e:?}")).template
    }

    fn refused(bin: &str) -> Vec<String> {
        import(bin)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn translates_what_bins_document() {
        assert_eq!(ok("<Say>Hi {{ From }}</Say>"), "<Say>Hi {{ From }}</Say>");
        assert_eq!(
            ok("{{#Digits}}<Say>{{Digits}}</Say>{{/Digits}}{{^Digits}}<Say>none</Say>{{/Digits}}"),
            "{% if Digits %}<Say>{{ Digits }}</Say>{% endif %}{% if not Digits %}<Say>none</Say>{% endif %}"
        );
        assert_eq!(
            ok("<Dial>{{#Dest}}<Number>{{.}}</Number>{{/Dest}}</Dial>"),
            "<Dial>{% for Dest_item in Dest %}<Number>{{ Dest_item }}</Number>{% endfor %}</Dial>"
        );
        assert_eq!(
            ok("{{#each Dest}}<Number>{{this}}</Number>{{else}}<Say>no</Say>{{/each}}"),
            "{% for Dest_item in Dest %}<Number>{{ Dest_item }}</Number>{% else %}<Say>no</Say>{% endfor %}"
        );
        assert_eq!(
            ok("<Dial>{{#e164}}{{To}}{{/e164}}</Dial>{{! a note }}"),
            "<Dial>{{ To | e164 }}</Dial>"
        );
        assert_eq!(
            ok("{{#if Name}}a{{else}}b{{/if}}{{#unless Name}}c{{/unless}}"),
            "{% if Name %}a{% else %}b{% endif %}{% if not Name %}c{% endif %}"
        );
        let imported =
            import("<Say>{{Name}} {{From}} {{#each Dest}}{{this}}{{/each}}</Say>").unwrap();
        assert_eq!(imported.custom_params, ["Dest", "Name"]);
    }

    #[test]
    fn refuses_what_it_cannot_translate_with_line_and_column() {
        assert_eq!(
            refused("<Say>\n  {{{Body}}}</Say>")[0]
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            ["2", "3"]
        );
        let all = refused(
            "{{&Body}}\n{{> part}}\n{{=<% %>=}}\n{{a.b}}\n{{#x}}\n{{/y}}\n{{.}}\n{% raw %}",
        );
        let places: Vec<&str> = all.iter().map(|p| &p[..p.find(": ").unwrap()]).collect();
        assert_eq!(
            places,
            ["1:1", "2:1", "3:1", "4:1", "6:1", "7:1", "8:1"],
            "{all:#?}"
        );
        assert!(refused("{{#e164}}+1{{/e164}}")[0].contains("must hold one parameter"));
        assert!(refused("{{#x}}")[0].contains("never closed"));
        assert!(refused("{{if}}")[0].contains("reserved"));
    }
}
