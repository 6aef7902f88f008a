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
//!
//! A section is whatever Mustache makes of its value, decided per request as Mustache decides it
//! (the spec's "Sections"; pystache and chevron agree): a list is one pass per item, any other true
//! value one pass with `{{.}}` the value itself, a false one (not sent, empty) none. So every
//! `{{#Name}}` and `{{#each Name}}` becomes `{% for … in Name | each %}` (the `each` filter of
//! `templates`), never a loop over a text's letters and never a condition that ignores a list.
//!
//! Whitespace comes out as Mustache leaves it: a tag alone on its line (the spec's "standalone"
//! lines, as pystache reads them: spaces and tabs, the tag, the line's end) takes its line with it,
//! any other tag takes nothing. The template engine's own trimming (`trim_blocks`, `lstrip_blocks`) does the
//! first; where it would also trim around another tag, the tag says not to (`{%+`, `+%}`).
//!
//! Nesting is bounded ([`MAX_DEPTH`]): the translation and everything that later reads the
//! template recurse per level.

use std::collections::{BTreeSet, HashMap};

use crate::templates::context::TWILIO_PARAMS;
use crate::templates::{is_name, line_col};

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
    /// `{{#name}}`: one pass per item of a list, one pass over any other true value.
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
        /// Offsets of the opening tag, the `{{else}}` and the closing tag.
        at: usize,
        else_at: Option<usize>,
        close_at: Option<usize>,
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

/// A standalone tag's line: its indentation, and the line break it ends with (none at the end),
/// as ranges of the Bin.
#[derive(Debug, Clone, Copy)]
struct Line {
    indent: (usize, usize),
    newline: (usize, usize),
}

/// Deepest nesting of sections a Bin may have. Real Bins nest two or three; each level is a block
/// of the template, and the template engine refuses about 150.
pub const MAX_DEPTH: usize = 50;

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
    let (tokens, lines) = scan(bin, &mut |at, m| problems.push(problem(at, m)));
    let mut builder = Builder {
        tokens: &tokens,
        at: 0,
        too_deep: false,
        problems: Vec::new(),
    };
    let tree = builder.body(None, 0);
    problems.extend(builder.problems.into_iter().map(|(at, m)| problem(at, m)));
    let mut out = Emitter {
        bin,
        lines: &lines,
        out: Vec::new(),
        loops: Vec::new(),
        taken: tokens
            .iter()
            .filter_map(|t| match t {
                Token::Var(name, _) | Token::Open(_, name, _) => Some(name.clone()),
                _ => None,
            })
            .collect(),
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
        template: write(bin, &out.out),
        custom_params: custom,
    })
}

/// The tokens of `bin`, and the lines of its standalone tags by the tag's offset; the text those
/// lines hold besides the tag (indentation, trailing blanks, the line break) is left out of the
/// text tokens.
fn scan(bin: &str, problem: &mut dyn FnMut(usize, String)) -> (Vec<Token>, HashMap<usize, Line>) {
    let mut tokens = Vec::new();
    let mut lines = HashMap::new();
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
            _ => {
                tokens.push(Token::Var(inner.to_string(), open));
                continue;
            }
        }
        // Every tag but a variable may stand alone on its line.
        if let Some((line, line_start, next)) = standalone(bin, open, pos) {
            // The text before the tag: last, or last but the tag's own token.
            for token in tokens.iter_mut().rev().take(2) {
                if let Token::Text(start, end) = token {
                    if *end == open {
                        *end = line_start.max(*start);
                    }
                }
            }
            lines.insert(open, line);
            pos = next;
        }
    }
    (tokens, lines)
}

/// The line of the tag `start..end` when it stands alone there (spaces and tabs before it, the
/// line's end right after it), where that line starts, and where the next one starts.
///
/// Mustache's spec leaves the exact rule to implementations; this is pystache's (`parser.py`): a
/// line ends at `\r\n`, `\n` or `\r`, and a blank after the tag keeps the line (chevron would
/// take it). Where the two differ the Bin's document differs only in whitespace Twilio ignores.
fn standalone(bin: &str, start: usize, end: usize) -> Option<(Line, usize, usize)> {
    let before = &bin[..start];
    let line_start = before.trim_end_matches([' ', '\t']).len();
    if line_start > 0 && !before[..line_start].ends_with(['\n', '\r']) {
        return None;
    }
    let rest = &bin[end..];
    let newline = if rest.starts_with("\r\n") {
        2
    } else if rest.starts_with(['\n', '\r']) {
        1
    } else if rest.is_empty() {
        0
    } else {
        return None;
    };
    // After a lone `\r` the engine would not take the indentation (it looks for `\n`): it goes.
    let indent = if before[..line_start].ends_with('\r') {
        (start, start)
    } else {
        (line_start, start)
    };
    let line = Line {
        indent,
        newline: (end, end + newline),
    };
    Some((line, line_start, end + newline))
}

/// The block tree of a Bin's tokens, at most [`MAX_DEPTH`] sections deep.
struct Builder<'t> {
    tokens: &'t [Token],
    at: usize,
    /// Set when a section opened too deep: the rest is not read, and what stays open is not
    /// reported again at every level.
    too_deep: bool,
    problems: Vec<(usize, String)>,
}

impl Builder<'_> {
    /// The nodes up to the close of `open` (the section's kind, name and offset), `depth` deep.
    // Long on purpose: one arm per section token of a bin, the nesting rules in one place.
    fn body(&mut self, open: Option<(Kind, &str, usize)>, depth: usize) -> Vec<Node> {
        let mut body = Vec::new();
        while let Some(token) = self.tokens.get(self.at) {
            if self.too_deep {
                return body;
            }
            self.at += 1;
            match token {
                Token::Text(a, b) => body.push(Node::Text(*a, *b)),
                Token::Var(name, off) => body.push(Node::Var(name.clone(), *off)),
                Token::Open(kind, name, off) => {
                    if depth >= MAX_DEPTH {
                        self.too_deep = true;
                        self.problems.push((
                            *off,
                            format!(
                                "sections nest more than {MAX_DEPTH} deep here; a TwiML Bin needs a \
                                 few levels: close some before opening more"
                            ),
                        ));
                        return body;
                    }
                    let inner = self.body(Some((*kind, name, *off)), depth + 1);
                    let mut otherwise = Vec::new();
                    let mut else_at = None;
                    // `{{else}}` splits an if/unless/each: what `body` returned stopped at it.
                    if let Some(Token::Else(at)) = self.tokens.get(self.at.wrapping_sub(1)) {
                        else_at = Some(*at);
                        otherwise = self.body(Some((*kind, name, *off)), depth + 1);
                    }
                    let close_at = match self.tokens.get(self.at.wrapping_sub(1)) {
                        Some(Token::Close(_, at)) => Some(*at),
                        _ => None,
                    };
                    body.push(Node::Block {
                        kind: *kind,
                        name: name.clone(),
                        at: *off,
                        else_at,
                        close_at,
                        body: inner,
                        otherwise,
                    });
                }
                Token::Else(off) => {
                    if open.is_none() {
                        self.problems
                            .push((*off, "`{{else}}` outside a block".into()));
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
                            self.problems
                                .push((*off, format!("`{{{{/{name}}}}}` closes nothing")));
                            continue;
                        }
                    };
                    if name != expected {
                        self.problems.push((
                            *off,
                            format!(
                                "`{{{{/{name}}}}}` closes `{expected}`: write `{{{{/{expected}}}}}`"
                            ),
                        ));
                    }
                    return body;
                }
            }
        }
        if let Some((_, name, off)) = open.filter(|_| !self.too_deep) {
            self.problems
                .push((off, format!("`{name}` is never closed")));
        }
        body
    }
}

/// A piece of the template being written.
#[derive(Debug)]
enum Out {
    /// Text and expressions, as written.
    Text(String),
    /// A block tag's statement (`for … in … | each`), with the Bin tag's line when it stood alone.
    Block(String, Option<Line>),
}

struct Emitter<'a> {
    bin: &'a str,
    lines: &'a HashMap<usize, Line>,
    out: Vec<Out>,
    /// Loop variables of the enclosing sections, innermost last.
    loops: Vec<String>,
    /// Every name the Bin uses: a loop variable is none of them nor an enclosing section's, so it
    /// hides neither a parameter nor an outer value.
    taken: BTreeSet<String>,
    custom: Vec<String>,
    problems: Vec<(usize, String)>,
}

impl Emitter<'_> {
    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.node(node);
        }
    }

    fn text(&mut self, text: String) {
        self.out.push(Out::Text(text));
    }

    /// The block tag for the Bin tag at `at` (None: a tag the Bin never closed).
    fn block(&mut self, statement: String, at: Option<usize>) {
        let line = at.and_then(|at| self.lines.get(&at)).copied();
        self.out.push(Out::Block(statement, line));
    }

    // Long on purpose: one arm per node kind of a bin, the format's whole grammar in one place.
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
                self.text(text.to_string());
            }
            Node::Var(name, at) => {
                let name = if name == "." || name == "this" {
                    match self.loops.last() {
                        Some(var) => var.clone(),
                        None => {
                            self.problems.push((
                                *at,
                                format!(
                                    "`{{{{{name}}}}}` outside a section: it is the value a \
                                     `{{{{#Name}}}}` section is on"
                                ),
                            ));
                            return;
                        }
                    }
                } else {
                    match self.name(name, *at) {
                        Some(name) => name,
                        None => return,
                    }
                };
                self.text(format!("{{{{ {name} }}}}"));
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
                            self.text(format!("{{{{ {var} | e164 }}}}"));
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
                else_at,
                close_at,
                body,
                otherwise,
            } => {
                let Some(name) = self.name(name, *at) else {
                    return;
                };
                let close = if matches!(kind, Kind::Section | Kind::Each) {
                    let var = self.loop_variable(&name);
                    self.block(format!("for {var} in {name} | each"), Some(*at));
                    self.loops.push(var);
                    self.nodes(body);
                    self.loops.pop();
                    "endfor"
                } else {
                    let not = match kind {
                        Kind::Inverted | Kind::Unless => "not ",
                        _ => "",
                    };
                    self.block(format!("if {not}{name}"), Some(*at));
                    self.nodes(body);
                    "endif"
                };
                if let Some(else_at) = else_at {
                    self.block("else".into(), Some(*else_at));
                    self.nodes(otherwise);
                }
                self.block(close.into(), *close_at);
            }
        }
    }

    /// `Name_item`, or `Name_item_2`, ... when the Bin uses that name or an enclosing section has it.
    fn loop_variable(&self, name: &str) -> String {
        let base = format!("{name}_item");
        (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}_{n}"),
            })
            .find(|v| !self.taken.contains(v) && !self.loops.contains(v))
            .expect("an unbounded sequence has a free name")
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

/// The template text of `out`. A block tag from a standalone Bin tag keeps that tag's line: the
/// engine's `lstrip_blocks` takes its indentation and `trim_blocks` its line break, as Mustache
/// takes the line. Any other block tag says where the engine must not trim: `{%+` when only
/// whitespace precedes it on its line, `+%}` when a line break follows it.
fn write(bin: &str, out: &[Out]) -> String {
    let mut text = String::new();
    for (i, piece) in out.iter().enumerate() {
        match piece {
            Out::Text(t) => text.push_str(t),
            Out::Block(statement, Some(line)) => {
                text.push_str(&bin[line.indent.0..line.indent.1]);
                text.push_str(&format!("{{% {statement} %}}"));
                text.push_str(&bin[line.newline.0..line.newline.1]);
            }
            Out::Block(statement, None) => {
                let line = &text[text.rfind('\n').map_or(0, |i| i + 1)..];
                let keep_before = !line.is_empty() && line.chars().all(char::is_whitespace);
                let next = out[i + 1..].iter().find_map(|p| match p {
                    Out::Text(t) => t.chars().next(),
                    Out::Block(..) => Some('{'),
                });
                let keep_after = matches!(next, Some('\r' | '\n'));
                text.push_str(if keep_before { "{%+ " } else { "{% " });
                text.push_str(statement);
                text.push_str(if keep_after { " +%}" } else { " %}" });
            }
        }
    }
    text
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
            "{% for Digits_item in Digits | each %}<Say>{{ Digits }}</Say>{% endfor %}\
             {% if not Digits %}<Say>none</Say>{% endif %}"
        );
        assert_eq!(
            ok("<Dial>{{#Dest}}<Number>{{.}}</Number>{{/Dest}}</Dial>"),
            "<Dial>{% for Dest_item in Dest | each %}<Number>{{ Dest_item }}</Number>{% endfor %}</Dial>"
        );
        assert_eq!(
            ok("{{#each Dest}}<Number>{{this}}</Number>{{else}}<Say>no</Say>{{/each}}"),
            "{% for Dest_item in Dest | each %}<Number>{{ Dest_item }}</Number>{% else %}<Say>no</Say>{% endfor %}"
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
    fn a_tag_alone_on_its_line_takes_the_line_and_no_other_tag_takes_anything() {
        // Standalone lines keep their layout; the engine's trimming takes them as Mustache does.
        assert_eq!(
            ok("<Dial>\n  {{#Dest}}\n  <Number>{{.}}</Number>\n  {{/Dest}}\n</Dial>"),
            "<Dial>\n  {% for Dest_item in Dest | each %}\n  <Number>{{ Dest_item }}</Number>\n  \
             {% endfor %}\n</Dial>"
        );
        // Inline tags keep the spaces before and the line break after them.
        assert_eq!(
            ok("<Say>\n  {{#A}}x{{/A}}\n</Say>"),
            "<Say>\n  {%+ for A_item in A | each %}x{% endfor +%}\n</Say>"
        );
        // A comment alone on its line goes with the line; a blank after a tag keeps the line.
        assert_eq!(
            ok("a\n  {{! note }}\nb {{^A}} \nc{{/A}}"),
            "a\nb {% if not A %} \nc{% endif %}"
        );
        let env = crate::templates::new_environment();
        let render = |t: &str| {
            env.render_str(&ok(t), minijinja::context! { A => "1" })
                .unwrap()
        };
        assert_eq!(render("a\n  {{#A}}\n  x\n  {{/A}}\nb"), "a\n  x\nb");
        assert_eq!(render("a\n  {{#A}}x{{/A}}\nb"), "a\n  x\nb");
        assert_eq!(render("a {{#A}}\nx\n{{/A}} b"), "a \nx\n b");
    }

    #[test]
    fn loop_variables_hide_no_parameter_and_no_outer_value() {
        assert_eq!(
            ok("{{#A}}{{#A}}{{.}}{{/A}}{{.}}{{/A}}{{#A}}{{.}}{{/A}}"),
            "{% for A_item in A | each %}{% for A_item_2 in A | each %}{{ A_item_2 }}{% endfor %}\
             {{ A_item }}{% endfor %}{% for A_item in A | each %}{{ A_item }}{% endfor %}"
        );
        assert_eq!(
            ok("{{#A}}{{A_item}}{{.}}{{/A}}"),
            "{% for A_item_2 in A | each %}{{ A_item }}{{ A_item_2 }}{% endfor %}"
        );
        // A condition keeps the enclosing section's value.
        assert_eq!(
            ok("{{#A}}{{^B}}{{.}}{{/B}}{{/A}}"),
            "{% for A_item in A | each %}{% if not B %}{{ A_item }}{% endif %}{% endfor %}"
        );
    }

    #[test]
    fn nesting_is_bounded_with_one_problem_at_the_section_too_deep() {
        let depth = |n: usize| "{{#a}}".repeat(n) + "x" + &"{{/a}}".repeat(n);
        assert!(import(&depth(MAX_DEPTH)).is_ok());
        let deep = depth(MAX_DEPTH + 1);
        let problems = refused(&deep);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("1:{}: sections nest more than", 6 * MAX_DEPTH + 1)),
            "{problems:?}"
        );
        // Far deeper than any stack allows, on a thread with little of it: one problem, no overflow.
        let deepest = depth(100_000);
        let problems = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || refused(&deepest))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
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
