//! Every document a template can render, up to its expressions: one per way through its
//! `{% if %}` / `{% elif %}` / `{% else %}` branches, with loops taken 0, 1 and 2 times (0 and 1
//! when every way through the loop's body is whole elements, or plain text with an expression in
//! it: a second pass repeats them, which changes neither well-formedness nor what may nest where).
//! Pure.
//!
//! MiniJinja's delimiters are fixed (`{{ }}`, `{% %}`, `{# #}`, `-` whitespace control, and the
//! repo's `trim_blocks`/`lstrip_blocks`), so a small scanner over the source finds the tags without
//! reaching into the engine's parse tree. Each `{{ expression }}` becomes [`EXPRESSION_MARK`]
//! (values are XML-escaped when rendered, so a mark stands for text). Whatever the scanner cannot
//! judge (macros, includes, block `set`, markup-producing filters) is an error, never a silent pass.

use crate::twilio::EXPRESSION_MARK;

/// More paths than this and the template is reported instead of judged.
pub const MAX_PATHS: usize = 64;

/// Deeper nesting of blocks than this is reported instead of judged (the template engine refuses
/// about 150; judging recurses once per level).
pub const MAX_NESTING: usize = 100;

/// Filters whose result is marked safe and written out unescaped.
const MARKUP_FILTERS: &[&str] = &["safe", "e", "escape", "tojson"];

/// One rendered path, with a map back to the source.
#[derive(Debug, Clone)]
pub struct Path {
    /// The document, with [`EXPRESSION_MARK`] for each expression.
    pub doc: String,
    /// `(offset in doc, offset in source, copied verbatim)`, ascending.
    spans: Vec<(usize, usize, bool)>,
}

impl Path {
    /// The source offset a document offset comes from.
    pub fn source_offset(&self, offset: usize) -> usize {
        let i = self.spans.partition_point(|s| s.0 <= offset);
        match i.checked_sub(1).map(|i| self.spans[i]) {
            Some((doc, src, true)) => src + (offset - doc),
            Some((_, src, false)) => src,
            None => 0,
        }
    }

    fn push_raw(&mut self, text: &str, src: usize) {
        if !text.is_empty() {
            self.spans.push((self.doc.len(), src, true));
            self.doc.push_str(text);
        }
    }

    fn push_mark(&mut self, src: usize) {
        self.spans.push((self.doc.len(), src, false));
        self.doc.push(EXPRESSION_MARK);
    }

    /// The path without the leading whitespace a render is trimmed of.
    pub fn trimmed(mut self) -> Path {
        let cut = self.doc.len() - self.doc.trim_start().len();
        if cut == 0 {
            return self;
        }
        self.doc.drain(..cut);
        // Whitespace is only ever raw text: a span cut into keeps its rest.
        let mut spans = Vec::with_capacity(self.spans.len());
        for (i, &(d, s, raw)) in self.spans.iter().enumerate() {
            let next = self.spans.get(i + 1).map_or(usize::MAX, |n| n.0);
            if d >= cut {
                spans.push((d - cut, s, raw));
            } else if raw && next > cut {
                spans.push((0, s + (cut - d), raw));
            }
        }
        self.spans = spans;
        self
    }
}

/// Why a template's paths could not be listed; `offset` is into the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unjudgeable {
    /// Byte offset into the source.
    pub offset: usize,
    /// What the check cannot judge and what to do.
    pub message: String,
}

#[derive(Debug)]
enum Piece {
    Raw(usize, usize),
    Expr(usize),
    If(Vec<Vec<Piece>>),
    /// Body, `{% else %}` body, whether a second pass can make a document one pass does not
    /// (see [`repeats_harmlessly`]), and the offset of the `{% for %}`.
    For(Vec<Piece>, Vec<Piece>, bool, usize),
}

#[derive(Debug)]
enum Tok<'a> {
    Raw(usize, usize),
    /// A `{% raw %}` block at the first offset: its text, between the other two, verbatim.
    Verbatim(usize, usize, usize),
    Expr(usize, &'a str),
    Stmt(usize, &'a str),
}

/// Lists every path of `source` (each trimmed of leading whitespace, duplicates removed).
pub fn paths(source: &str) -> Result<Vec<Path>, Unjudgeable> {
    let toks = scan(source)?;
    let mut at = 0;
    let mut pieces = parse_body(&toks, &mut at, &[], 0)?;
    if let Some(Tok::Stmt(off, s)) = toks.get(at) {
        return Err(Unjudgeable {
            offset: *off,
            message: format!("`{{% {} %}}` closes nothing", s.trim()),
        });
    }
    single_passes(source, &mut pieces);
    let start = vec![Path {
        doc: String::new(),
        spans: Vec::new(),
    }];
    let all = expand(source, &pieces, start).ok_or(Unjudgeable {
        offset: 0,
        message: format!(
            "more than {MAX_PATHS} ways through the template's {{% if %}}/{{% for %}} blocks; \
             the check cannot judge each one (split the template, or nest fewer conditions)"
        ),
    })?;
    Ok(distinct(all.into_iter().map(Path::trimmed).collect()))
}

fn expand(source: &str, pieces: &[Piece], mut paths: Vec<Path>) -> Option<Vec<Path>> {
    for piece in pieces {
        match piece {
            Piece::Raw(a, b) => paths
                .iter_mut()
                .for_each(|p| p.push_raw(&source[*a..*b], *a)),
            Piece::Expr(at) => paths.iter_mut().for_each(|p| p.push_mark(*at)),
            Piece::If(branches) => {
                let mut next = Vec::new();
                for branch in branches {
                    next.extend(expand(source, branch, paths.clone())?);
                    next = distinct(next);
                    if next.len() > MAX_PATHS {
                        return None;
                    }
                }
                paths = next;
            }
            Piece::For(body, otherwise, twice, _) => {
                let mut next = expand(source, otherwise, paths.clone())?;
                let once = expand(source, body, paths)?;
                if *twice {
                    next.extend(expand(source, body, once.clone())?);
                }
                next.extend(once);
                next = distinct(next);
                if next.len() > MAX_PATHS {
                    return None;
                }
                paths = next;
            }
        }
    }
    Some(paths)
}

/// One `{% for %}` of a template and what one pass through its body can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// Offset of its `{% for %}` in the source.
    pub offset: usize,
    /// Each way through one pass: the bytes of text it writes, and the source offset of each
    /// `{{ expression }}` it writes.
    pub passes: Vec<(usize, Vec<usize>)>,
}

/// Every `{% for %}` of `source`, outermost first, with the ways through one pass of its body (a
/// loop inside it taken 0, 1 or 2 times, as [`paths`] takes it).
pub fn loops(source: &str) -> Result<Vec<Loop>, Unjudgeable> {
    let toks = scan(source)?;
    let mut at = 0;
    let mut pieces = parse_body(&toks, &mut at, &[], 0)?;
    single_passes(source, &mut pieces);
    let mut found = Vec::new();
    collect_loops(source, &pieces, &mut found);
    Ok(found)
}

fn collect_loops(source: &str, pieces: &[Piece], found: &mut Vec<Loop>) {
    for piece in pieces {
        match piece {
            Piece::If(branches) => branches
                .iter()
                .for_each(|branch| collect_loops(source, branch, found)),
            Piece::For(body, otherwise, _, offset) => {
                let empty = Path {
                    doc: String::new(),
                    spans: Vec::new(),
                };
                let passes = expand(source, body, vec![empty])
                    .unwrap_or_default()
                    .into_iter()
                    .map(|path| {
                        let marks: Vec<usize> = path
                            .spans
                            .iter()
                            .filter(|(_, _, raw)| !raw)
                            .map(|(_, src, _)| *src)
                            .collect();
                        let text = path.doc.len() - marks.len() * EXPRESSION_MARK.len_utf8();
                        (text, marks)
                    })
                    .collect();
                found.push(Loop {
                    offset: *offset,
                    passes,
                });
                collect_loops(source, body, found);
                collect_loops(source, otherwise, found);
            }
            Piece::Raw(..) | Piece::Expr(_) => {}
        }
    }
}

/// The text inside the tag that starts at `offset` (`{{ … }}` or `{% … %}`), without its
/// whitespace control.
pub fn tag_body(source: &str, offset: usize) -> &str {
    let rest = &source[offset..];
    let close = if rest.starts_with("{%") { "%}" } else { "}}" };
    let inner = &rest[2..];
    let end = find_close(inner, close, false).unwrap_or(inner.len());
    inner[..end]
        .trim_start_matches(['-', '+'])
        .trim_end_matches(['-', '+'])
        .trim()
}

/// `paths` without the repeats of a document (branches that differ in nothing they write): the
/// same document is judged the same, so only the first is kept.
fn distinct(paths: Vec<Path>) -> Vec<Path> {
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(p.doc.clone()))
        .collect()
}

/// Marks the loops whose second pass cannot make a new document, innermost first, so that each
/// body is listed once here and a loop inside a loop is not judged again per outer path.
fn single_passes(source: &str, pieces: &mut [Piece]) {
    for piece in pieces {
        match piece {
            Piece::If(branches) => branches
                .iter_mut()
                .for_each(|branch| single_passes(source, branch)),
            Piece::For(body, otherwise, twice, _) => {
                single_passes(source, body);
                single_passes(source, otherwise);
                *twice = !repeats_harmlessly(source, body);
            }
            Piece::Raw(..) | Piece::Expr(_) => {}
        }
    }
}

/// True when a second pass through `body` cannot make a document one pass does not: every way
/// through it is nothing, whole elements (markup that closes what it opens, whitespace around it),
/// or text free of markup and quotes that holds an expression (so the value it stands in is not
/// typed at check time, and more of it is the same kind of text).
fn repeats_harmlessly(source: &str, body: &[Piece]) -> bool {
    let empty = Path {
        doc: String::new(),
        spans: Vec::new(),
    };
    expand(source, body, vec![empty]).is_some_and(|ways| {
        ways.iter().all(|path| {
            let inner = path.doc.trim();
            let elements = inner.starts_with('<')
                && inner.ends_with('>')
                && crate::twilio::xml::parse(&format!("<x>{inner}</x>")).is_ok();
            let text =
                inner.contains(EXPRESSION_MARK) && !inner.contains(['<', '>', ']', '"', '\'', '&']);
            inner.is_empty() || elements || text
        })
    })
}

fn keyword(stmt: &str) -> &str {
    let s = stmt.trim_start();
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Pieces up to one of `until` (left unconsumed at `*at`).
// Long on purpose: one arm per MiniJinja statement, read side by side with its parser.
fn parse_body(
    toks: &[Tok<'_>],
    at: &mut usize,
    until: &[&str],
    depth: usize,
) -> Result<Vec<Piece>, Unjudgeable> {
    let mut out = Vec::new();
    while let Some(tok) = toks.get(*at) {
        match tok {
            Tok::Raw(a, b) | Tok::Verbatim(_, a, b) => out.push(Piece::Raw(*a, *b)),
            Tok::Expr(off, expr) => {
                if let Some(f) = markup_filter(expr) {
                    return Err(Unjudgeable {
                        offset: *off,
                        message: format!(
                            "the `{f}` filter writes its value unescaped; answers must escape \
                             every value"
                        ),
                    });
                }
                out.push(Piece::Expr(*off));
            }
            Tok::Stmt(off, stmt) => {
                let kw = keyword(stmt);
                if until.contains(&kw) {
                    return Ok(out);
                }
                // A value bound here is printed later: it must not arrive marked safe either.
                if let Some(f) =
                    markup_filter(stmt).filter(|_| matches!(kw, "set" | "with" | "for"))
                {
                    return Err(Unjudgeable {
                        offset: *off,
                        message: format!(
                            "the `{f}` filter marks its value safe, so it would print unescaped; \
                             answers must escape every value"
                        ),
                    });
                }
                if matches!(kw, "if" | "for" | "with") && depth >= MAX_NESTING {
                    return Err(Unjudgeable {
                        offset: *off,
                        message: format!(
                            "blocks nest more than {MAX_NESTING} deep here; the check cannot judge \
                             the template (close some blocks before opening more)"
                        ),
                    });
                }
                *at += 1;
                match kw {
                    "if" => {
                        let mut branches = Vec::new();
                        let mut has_else = false;
                        loop {
                            branches.push(parse_body(
                                toks,
                                at,
                                &["elif", "else", "endif"],
                                depth + 1,
                            )?);
                            match toks.get(*at) {
                                Some(Tok::Stmt(_, s)) if keyword(s) == "endif" => break,
                                Some(Tok::Stmt(_, s)) => has_else |= keyword(s) == "else",
                                _ => return Err(unclosed(*off, "if")),
                            }
                            *at += 1;
                        }
                        *at += 1;
                        if !has_else {
                            branches.push(Vec::new());
                        }
                        out.push(Piece::If(branches));
                        continue;
                    }
                    "for" => {
                        let body = parse_body(toks, at, &["else", "endfor"], depth + 1)?;
                        let mut otherwise = Vec::new();
                        if matches!(toks.get(*at), Some(Tok::Stmt(_, s)) if keyword(s) == "else") {
                            *at += 1;
                            otherwise = parse_body(toks, at, &["endfor"], depth + 1)?;
                        }
                        if !matches!(toks.get(*at), Some(Tok::Stmt(_, s)) if keyword(s) == "endfor")
                        {
                            return Err(unclosed(*off, "for"));
                        }
                        *at += 1;
                        out.push(Piece::For(body, otherwise, true, *off));
                        continue;
                    }
                    "with" => {
                        out.extend(parse_body(toks, at, &["endwith"], depth + 1)?);
                        if toks.get(*at).is_none() {
                            return Err(unclosed(*off, "with"));
                        }
                        *at += 1;
                        continue;
                    }
                    // `{% set x = ... %}` and `{% do ... %}` print nothing.
                    "set" if stmt.contains('=') => {}
                    "do" | "endwith" => {}
                    other => {
                        return Err(Unjudgeable {
                            offset: *off,
                            message: format!(
                                "`{{% {other} %}}` is not supported in TwiML templates: the check \
                                 cannot judge what it renders (use if/elif/else, for, set)"
                            ),
                        })
                    }
                }
                continue;
            }
        }
        *at += 1;
    }
    Ok(out)
}

fn is_nl(c: char) -> bool {
    c == '\r' || c == '\n'
}

fn unclosed(offset: usize, what: &str) -> Unjudgeable {
    Unjudgeable {
        offset,
        message: format!("`{{% {what} %}}` is never closed"),
    }
}

/// The first filter in `expr` whose output is written unescaped.
fn markup_filter(expr: &str) -> Option<&'static str> {
    let mut rest = expr;
    while let Some(i) = rest.find('|') {
        rest = &rest[i + 1..];
        let name = keyword(rest);
        if let Some(f) = MARKUP_FILTERS.iter().find(|f| **f == name) {
            return Some(f);
        }
    }
    None
}

/// The statements of `source` by keyword, with their offsets; a `{% raw %}` block counts as `raw`.
pub fn statements(source: &str) -> Result<Vec<(usize, &str)>, Unjudgeable> {
    Ok(scan(source)?
        .into_iter()
        .filter_map(|t| match t {
            Tok::Stmt(off, s) => Some((off, keyword(s))),
            Tok::Verbatim(off, ..) => Some((off, "raw")),
            _ => None,
        })
        .collect())
}

/// The filters `source` applies (`{{ x | upper }}`, `{% for d in D | each %}`,
/// `{% filter upper %}`): the offset of each name, and the name. Quoted text is not read.
pub fn filters(source: &str) -> Result<Vec<(usize, &str)>, Unjudgeable> {
    let mut found = Vec::new();
    for tok in scan(source)? {
        let body = match tok {
            Tok::Expr(_, body) | Tok::Stmt(_, body) => body,
            _ => continue,
        };
        let base = body.as_ptr() as usize - source.as_ptr() as usize;
        let name_at = |from: usize| {
            let rest = &body[from..];
            let start = from + (rest.len() - rest.trim_start().len());
            let len = body[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(body.len() - start);
            (len > 0).then(|| (base + start, &body[start..start + len]))
        };
        if keyword(body) == "filter" {
            let kw = body.len() - body.trim_start().len() + "filter".len();
            found.extend(name_at(kw));
        }
        let mut quote = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (Some(_), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '|') => found.extend(name_at(i + 1)),
                (None, _) => {}
            }
        }
    }
    Ok(found)
}

/// The innermost block left open: where it opens, its statement, the `end…` tag that closes it,
/// and the closing tag of another block that stands where it must close (None: the template
/// ends first). None when every block is closed in order, or the tags cannot be read.
pub fn open_block(source: &str) -> Option<OpenBlock<'_>> {
    const BLOCKS: &[&str] = &[
        "if",
        "for",
        "with",
        "macro",
        "call",
        "filter",
        "block",
        "autoescape",
    ];
    let mut open: Vec<(usize, &str, &str)> = Vec::new();
    for tok in scan(source).ok()? {
        let Tok::Stmt(off, body) = tok else { continue };
        let kw = keyword(body);
        let opens = BLOCKS.contains(&kw) || (kw == "set" && !body.contains('='));
        if opens {
            open.push((off, kw, body.trim()));
        } else if let Some(closed) = kw.strip_prefix("end") {
            match open.last() {
                Some((_, top, _)) if *top == closed => {
                    open.pop();
                }
                Some(&(offset, top, statement)) => {
                    return Some(OpenBlock {
                        offset,
                        statement,
                        end: top,
                        stray: Some((off, body.trim())),
                    })
                }
                None => return None,
            }
        }
    }
    open.pop().map(|(offset, top, statement)| OpenBlock {
        offset,
        statement,
        end: top,
        stray: None,
    })
}

/// A block [`open_block`] found open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBlock<'a> {
    /// Offset of its `{%`.
    pub offset: usize,
    /// Its statement, as written (`if Digits == "1"`).
    pub statement: &'a str,
    /// Its keyword; `end` + this closes it.
    pub end: &'a str,
    /// The closing tag of another block where this one must close: its offset and statement.
    pub stray: Option<(usize, &'a str)>,
}

/// Splits `source` into raw text, expressions and statements, applying whitespace control as
/// MiniJinja's lexer does (`minijinja::compiler::lexer`, read for 3.1): one trailing newline of the
/// template dropped, `lstrip_blocks` only where nothing but whitespace stands between the line's
/// start and the tag (earlier tags on the line count), `trim_blocks` taking `\r`, `\n` or both.
// Long on purpose: MiniJinja's lexer rules in its own order, to be compared with it line by line.
fn scan(source: &str) -> Result<Vec<Tok<'_>>, Unjudgeable> {
    // `keep_trailing_newline` is off: the engine never sees a final `\n`, then a final `\r`.
    let kept = source.strip_suffix('\n').unwrap_or(source);
    let source = &source[..kept.strip_suffix('\r').unwrap_or(kept).len()];
    let bytes = source.as_bytes();
    let mut toks = Vec::new();
    let mut raw_start = 0;
    // Raw text starts here after `-%}` / trim_blocks removed what follows a tag.
    let mut i = 0;
    while let Some(rel) = source[i..].find('{') {
        let open = i + rel;
        let kind = bytes.get(open + 1).copied();
        let close = match kind {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                i = open + 1;
                continue;
            }
        };
        let Some(end_rel) = find_close(&source[open + 2..], close, kind == Some(b'#')) else {
            return Err(Unjudgeable {
                offset: open,
                message: format!(
                    "`{}` is never closed with `{close}`",
                    &source[open..open + 2]
                ),
            });
        };
        let inner_start = open + 2;
        let inner_end = open + 2 + end_rel;
        let tag_end = inner_end + 2;
        let inner = &source[inner_start..inner_end];
        let strip_before = inner.starts_with('-');
        let strip_after = inner.ends_with('-');
        let block = kind != Some(b'{');
        // Text before the tag, with `{%-` or lstrip_blocks applied.
        let mut text_end = open;
        if strip_before {
            text_end = raw_start + source[raw_start..open].trim_end().len();
        } else if block && !inner.starts_with('+') {
            // The tag starts its line when only whitespace (not line breaks) stands before it back
            // to a line break or the start, tags on the line included; the strip then takes that
            // whitespace only if a `\n` (or nothing) of this raw text stays before it.
            let starts_line = source[..open]
                .chars()
                .rev()
                .find(|c| is_nl(*c) || !c.is_whitespace())
                .is_none_or(is_nl);
            let before = &source[raw_start..open];
            let kept = before.trim_end_matches(|c: char| c.is_whitespace() && !is_nl(c));
            if starts_line && (kept.is_empty() || kept.ends_with('\n')) {
                text_end = raw_start + kept.len();
            }
        }
        if text_end > raw_start {
            toks.push(Tok::Raw(raw_start, text_end));
        }
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+']);
        match kind {
            Some(b'{') => toks.push(Tok::Expr(open, body)),
            Some(b'%') if keyword(body) == "raw" => {
                let Some(end) = source[tag_end..].find("endraw") else {
                    return Err(unclosed(open, "raw"));
                };
                let endraw_open = source[..tag_end + end].rfind("{%").unwrap_or(tag_end);
                toks.push(Tok::Verbatim(open, tag_end, endraw_open.max(tag_end)));
                let after = source[tag_end + end..]
                    .find("%}")
                    .map_or(source.len(), |n| tag_end + end + n + 2);
                raw_start = after;
                i = after;
                continue;
            }
            Some(b'%') => toks.push(Tok::Stmt(open, body)),
            _ => {}
        }
        raw_start = tag_end;
        if strip_after {
            raw_start = tag_end + (source[tag_end..].len() - source[tag_end..].trim_start().len());
        } else if block && !inner.ends_with('+') {
            let rest = &source[tag_end..];
            let rest = rest.strip_prefix('\r').unwrap_or(rest);
            let rest = rest.strip_prefix('\n').unwrap_or(rest);
            raw_start = source.len() - rest.len();
        }
        i = raw_start.max(tag_end);
    }
    if raw_start < source.len() {
        toks.push(Tok::Raw(raw_start, source.len()));
    }
    Ok(toks)
}

/// Offset of `close` in `text`, skipping quoted strings in expressions and statements.
fn find_close(text: &str, close: &str, comment: bool) -> Option<usize> {
    if comment {
        return text.find(close);
    }
    let mut quote = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) if c == '\\' => {
                let _ = q;
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if text[i..].starts_with(close) => return Some(i),
            None => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Template source with `{% if %}` blocks, expressions, comments and every whitespace control
    /// MiniJinja knows, around text heavy in spaces, line breaks and markup.
    fn template() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            Just("a"),
            Just(" "),
            Just("  "),
            Just("\t"),
            Just("\n"),
            Just("\r\n"),
            Just("\r"),
            Just("\u{A0}"),
            Just("\u{2003}"),
            Just("<S>"),
            Just("</S>"),
            Just("]"),
            Just(">"),
        ]
        .prop_map(str::to_string);
        let ws = prop_oneof![Just(""), Just("-"), Just("+")];
        let leaf = prop_oneof![
            4 => text,
            1 => (prop_oneof![Just(""), Just("-")], prop_oneof![Just(""), Just("-")])
                .prop_map(|(a, b)| format!("{{{{{a} x {b}}}}}")),
            1 => (ws.clone(), ws.clone()).prop_map(|(a, b)| format!("{{#{a} c {b}#}}")),
        ];
        let tag = move |body: &str| {
            (ws.clone(), ws.clone()).prop_map({
                let body = body.to_string();
                move |(a, b)| format!("{{%{a} {body} {b}%}}")
            })
        };
        let leaves = proptest::collection::vec(leaf, 0..6).prop_map(|v| v.concat());
        leaves.prop_recursive(2, 16, 3, move |inner| {
            (
                tag("if a"),
                inner.clone(),
                proptest::option::of((tag("elif b"), inner.clone())),
                proptest::option::of((tag("else"), inner.clone())),
                tag("endif"),
                inner,
            )
                .prop_map(|(open, then, elif, otherwise, close, after)| {
                    let mut out = open + &then;
                    for (t, body) in elif.into_iter().chain(otherwise) {
                        out.push_str(&t);
                        out.push_str(&body);
                    }
                    out + &close + &after
                })
        })
    }

    proptest! {
        /// The scanner's paths are what MiniJinja renders: for any branch taken, the render
        /// (trimmed as `TemplateSet::render` trims it) is one of the paths with its values in.
        #[test]
        fn paths_are_what_the_engine_renders(
            parts in proptest::collection::vec(template(), 1..3),
            trailing in prop_oneof![Just(""), Just("\n"), Just("\r\n"), Just("\n\n")],
            a: bool,
            b: bool,
        ) {
            let source = parts.concat() + trailing;
            let env = crate::templates::new_environment();
            let rendered = env
                .render_str(&source, minijinja::context! { a, b, x => "V" })
                .unwrap();
            let listed = paths(&source);
            // Past 64 paths the scanner refuses, which is not what this test is about.
            prop_assume!(listed.is_ok());
            let listed: Vec<String> = listed
                .unwrap()
                .into_iter()
                .map(|p| p.doc.replace(EXPRESSION_MARK, "V"))
                .collect();
            prop_assert!(
                listed.iter().any(|p| p == rendered.trim_start()),
                "{source:?} rendered {rendered:?}, paths {listed:?}"
            );
        }
    }

    fn docs(source: &str) -> Vec<String> {
        let mut d: Vec<String> = paths(source)
            .unwrap()
            .into_iter()
            .map(|p| p.doc.replace(EXPRESSION_MARK, "$"))
            .collect();
        d.sort();
        d
    }

    #[test]
    fn every_branch_is_a_path() {
        assert_eq!(
            docs("<R>{% if a %}<G n=\"1\">{% elif b %}<G n=\"{{ x }}\">{% else %}<G>{% endif %}</G></R>"),
            ["<R><G n=\"$\"></G></R>", "<R><G n=\"1\"></G></R>", "<R><G></G></R>"]
        );
        assert_eq!(
            docs("<R>{% if a %}x{% endif %}</R>"),
            ["<R></R>", "<R>x</R>"]
        );
    }

    #[test]
    fn loops_run_zero_one_and_two_times() {
        assert_eq!(
            docs("<R>{% for m in M %}<S>{{ m }}{% else %}<N/>{% endfor %}</R>"),
            ["<R><N/></R>", "<R><S>$</R>", "<R><S>$<S>$</R>"]
        );
        assert_eq!(
            docs("<R><S>{% for m in M %}a] {{ m }}{% endfor %}</S></R>"),
            [
                "<R><S></S></R>",
                "<R><S>a] $</S></R>",
                "<R><S>a] $a] $</S></R>"
            ]
        );
        assert_eq!(
            docs("<R><S>{% for m in M %}a, {{ m }}{% endfor %}</S></R>"),
            ["<R><S></S></R>", "<R><S>a, $</S></R>"]
        );
    }

    #[test]
    fn a_loop_of_whole_elements_runs_zero_and_one_times() {
        assert_eq!(
            docs("<R>{% for m in M %}\n  <S>{{ m }}</S>{% if a %}<P/>{% endif %}\n{% else %}<N/>{% endfor %}</R>"),
            ["<R>  <S>$</S></R>", "<R>  <S>$</S><P/></R>", "<R><N/></R>"]
        );
        // Loops of different elements in a row: 2^n ways, not 3^n (and the same document twice
        // is one way).
        let loops = |n: usize| -> String {
            (0..n)
                .map(|i| format!("{{% for d in D %}}<N{i}>{{{{ d }}}}</N{i}>{{% endfor %}}"))
                .collect()
        };
        assert_eq!(paths(&loops(6)).unwrap().len(), 64);
        assert!(paths(&loops(7)).is_err());
        let same = "{% for d in D %}<N>{{ d }}</N>{% endfor %}".repeat(7);
        assert_eq!(paths(&same).unwrap().len(), 8);
    }

    #[test]
    fn filters_are_found_outside_quotes_with_their_place() {
        let src = "<R>{{ x | upper }}{{ \"a|b\" ~ y|uper(1) }}{% for d in D | each %}\
                   {% filter lower %}x{% endfilter %}{% endfor %}</R>";
        let found: Vec<(&str, &str)> = filters(src)
            .unwrap()
            .into_iter()
            .map(|(at, name)| (&src[at..at + name.len()], name))
            .collect();
        assert_eq!(
            found,
            [
                ("upper", "upper"),
                ("uper", "uper"),
                ("each", "each"),
                ("lower", "lower")
            ]
        );
    }

    #[test]
    fn the_block_left_open_is_named_with_its_place() {
        let src = "<R>\n{% if Digits %}\n{% for d in D %}{% endfor %}\n</R>";
        let b = open_block(src).unwrap();
        assert_eq!(
            (b.offset, b.statement, b.end, b.stray),
            (4, "if Digits", "if", None)
        );
        let src = "{% for d in D %}{% if a %}x{% endfor %}";
        let b = open_block(src).unwrap();
        assert_eq!((b.statement, b.stray), ("if a", Some((27, "endfor"))));
        assert_eq!(open_block("{% if a %}{% set x = 1 %}{% endif %}"), None);
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        let nested = |n: usize| "{% with %}".repeat(n) + "<S/>" + &"{% endwith %}".repeat(n);
        assert_eq!(paths(&nested(MAX_NESTING)).unwrap().len(), 1);
        let deep = nested(10_000);
        // Half the stack of the blocking thread a reload runs on (tokio's 2 MiB).
        let e = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || paths(&deep).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(e.offset, 10 * MAX_NESTING, "{e:?}");
        assert!(e.message.contains("nest more than 100 deep"), "{e:?}");
    }

    #[test]
    fn whitespace_control_and_block_lines() {
        assert_eq!(
            docs(
                "{# c #}\n<?xml version=\"1.0\"?>\n<R>\n  {% if a %}\n  <S/>\n  {% endif %}\n</R>"
            ),
            [
                "<?xml version=\"1.0\"?>\n<R>\n  <S/>\n</R>",
                "<?xml version=\"1.0\"?>\n<R>\n</R>"
            ]
        );
        assert_eq!(docs("<R> {{- x -}} </R>"), ["<R>$</R>"]);
        assert_eq!(
            docs("<R>{% raw %}{{ x }}{% endraw %}</R>"),
            ["<R>{{ x }}</R>"]
        );
    }

    #[test]
    fn maps_back_to_the_source() {
        let src = "{% if a %}\n<R>{{ x }}<S/></R>{% endif %}";
        let p = paths(src).unwrap();
        let p = p.iter().find(|p| !p.doc.is_empty()).unwrap();
        let at = p.doc.find("<S/>").unwrap();
        assert_eq!(&src[p.source_offset(at)..][..4], "<S/>");
        let mark = p.doc.find(EXPRESSION_MARK).unwrap();
        assert_eq!(&src[p.source_offset(mark)..][..2], "{{");
    }

    #[test]
    fn reports_what_it_cannot_judge() {
        for (src, expect) in [
            ("<R>{% macro m() %}x{% endmacro %}</R>", "macro"),
            ("<R>{% include \"x\" %}</R>", "include"),
            ("<R>{{ x | safe }}</R>", "safe"),
            ("<R>{{ x|e }}</R>", "unescaped"),
            ("<R>{% set x %}<S/>{% endset %}</R>", "set"),
        ] {
            let e = paths(src).unwrap_err();
            assert!(e.message.contains(expect), "{src}: {e:?}");
        }
        let ifs = |n: usize| -> String {
            (0..n)
                .map(|i| format!("{{% if a %}}<S{i}/>{{% endif %}}"))
                .collect()
        };
        assert!(paths(&ifs(7)).unwrap_err().message.contains("more than 64"));
        assert_eq!(paths(&ifs(6)).unwrap().len(), 64);
        assert_eq!(
            paths(&"{% if a %}<S/>{% endif %}".repeat(7)).unwrap().len(),
            8
        );
    }
}
