//! Proving at load time that a template can only ever render well-formed TwiML, so answers from it
//! skip the per-answer check. Pure.
//!
//! A rendered answer is the template's raw text pieces along one path through its `{% if %}`
//! branches, with every `{{ expression }}` replaced by its value, XML-escaped. Escaped text carries
//! no markup: no `<`, `>` or quote, only the five predefined entities, no character XML forbids.
//! So when every path, with each expression stood in for by [`EXPRESSION_MARK`], passes
//! [`twiml::lint`] and the marks sit only in text and attribute values, every real answer passes
//! too. Anything the argument does not cover (loops, `set`, macros, calls, filters that return
//! markup, expressions inside tag names or comments, too many paths) is simply not proven, and those
//! answers stay checked one by one.
//!
//! The template's structure comes from MiniJinja's own parser (its unstable `machinery` API, hence
//! the exact version pin in `Cargo.toml`), so whitespace control matches the compiled template.

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::syntax::SyntaxConfig;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::twiml::{self, EXPRESSION_MARK};

/// More paths than this and the template is not worth proving (each `if` doubles them).
const MAX_PATHS: usize = 64;

/// Filters whose result may be marked safe, which the formatter writes out unescaped.
const MARKUP_FILTERS: &[&str] = &["safe", "escape", "e", "tojson"];

/// True when every answer `source` can render is well-formed TwiML, whatever the request sent.
pub fn always_well_formed(source: &str, syntax: SyntaxConfig) -> bool {
    let Ok(Stmt::Template(template)) = minijinja::machinery::parse(source, "proof", syntax) else {
        return false;
    };
    let Some(paths) = expand(&template.children, vec![String::new()]) else {
        return false;
    };
    paths.iter().all(|path| {
        // Renders are trimmed of leading whitespace before they are checked and sent.
        let doc = path.trim_start();
        twiml::lint(doc, None).problems.is_empty() && marks_only_in_values(doc)
    })
}

/// Appends `stmts` to each of `prefixes`, forking at every `if`; `None` when unprovable.
fn expand(stmts: &[Stmt<'_>], mut prefixes: Vec<String>) -> Option<Vec<String>> {
    for stmt in stmts {
        match stmt {
            Stmt::EmitRaw(raw) => prefixes.iter_mut().for_each(|p| p.push_str(raw.raw)),
            Stmt::EmitExpr(emit) if escaped(&emit.expr) => {
                prefixes.iter_mut().for_each(|p| p.push(EXPRESSION_MARK));
            }
            Stmt::IfCond(cond) => {
                let mut taken = expand(&cond.true_body, prefixes.clone())?;
                taken.extend(expand(&cond.false_body, prefixes)?);
                if taken.len() > MAX_PATHS {
                    return None;
                }
                prefixes = taken;
            }
            _ => return None,
        }
    }
    Some(prefixes)
}

/// True when `expr` can only produce a plain value, which the formatter escapes; false when it
/// might produce a safe-marked one (from a filter in [`MARKUP_FILTERS`] or a call) or is not known.
fn escaped(expr: &Expr<'_>) -> bool {
    let args = |args: &[CallArg<'_>]| {
        args.iter().all(|arg| match arg {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => escaped(e),
        })
    };
    match expr {
        Expr::Var(_) | Expr::Const(_) => true,
        // Comparisons and tests are booleans, whatever their operands.
        Expr::Compare(_) | Expr::Test(_) => true,
        Expr::GetAttr(get) => escaped(&get.expr),
        Expr::GetItem(get) => escaped(&get.expr) && escaped(&get.subscript_expr),
        Expr::UnaryOp(op) => escaped(&op.expr),
        Expr::BinOp(op) => escaped(&op.left) && escaped(&op.right),
        Expr::IfExpr(e) => escaped(&e.true_expr) && e.false_expr.as_ref().is_none_or(escaped),
        Expr::Filter(f) => {
            !MARKUP_FILTERS.contains(&f.name)
                && f.expr.as_ref().is_none_or(escaped)
                && args(&f.args)
        }
        _ => false,
    }
}

/// True when every [`EXPRESSION_MARK`] in `doc` is in text or an attribute value, where an escaped
/// value cannot change the markup; false in names, entities, comments, CDATA and declarations.
fn marks_only_in_values(doc: &str) -> bool {
    let has_mark = |text: &str| text.contains(EXPRESSION_MARK);
    let mut reader = Reader::from_str(doc);
    loop {
        let clean = match reader.read_event() {
            Err(_) => return false,
            Ok(Event::Eof) => return true,
            Ok(Event::Text(_)) => true,
            Ok(Event::Start(e) | Event::Empty(e)) => {
                !has_mark(e.name().as_ref())
                    && e.attributes()
                        .all(|a| a.is_ok_and(|a| !has_mark(a.key.as_ref())))
            }
            Ok(Event::End(e)) => !has_mark(e.name().as_ref()),
            Ok(Event::GeneralRef(r)) => !has_mark(r.as_ref()),
            Ok(Event::CData(c)) => !has_mark(c.as_ref()),
            Ok(Event::Comment(c)) => !has_mark(c.as_ref()),
            Ok(Event::PI(p)) => !has_mark(p.as_ref()),
            Ok(Event::Decl(d)) => !has_mark(d.as_ref()),
            Ok(Event::DocType(d)) => !has_mark(d.as_ref()),
        };
        if !clean {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::syntax;

    fn proven(source: &str) -> bool {
        always_well_formed(source, syntax())
    }

    #[test]
    fn branches_that_each_balance_are_proven() {
        assert!(proven(
            "<?xml version=\"1.0\"?>\n<Response>\n{% if Body | trim | upper == \"HELP\" %}\n  \
             <Message>{{ company }}: help</Message>\n{% elif Body %}\n  \
             <Message a=\"{{ From }}\">Got \"{{ Body }}\"</Message>\n{% endif %}\n</Response>\n"
        ));
        assert!(proven(
            "<Response><Say>{{ From | e164 | default(\"x\") }}</Say></Response>"
        ));
    }

    #[test]
    fn a_branch_that_breaks_the_markup_is_not() {
        assert!(!proven(
            "<Response>{% if Digits %}<Say>{% endif %}hi</Say></Response>"
        ));
        assert!(!proven("<Response>{% if x %}</Response>{% endif %}"));
    }

    #[test]
    fn expressions_outside_values_are_not() {
        assert!(!proven("<Response><{{ verb }}>hi</{{ verb }}></Response>"));
        assert!(!proven(
            "<Response><Say {{ attr }}=\"1\">hi</Say></Response>"
        ));
        assert!(!proven("<Response><!-- {{ From }} --></Response>"));
        assert!(!proven("<Response><Say>&{{ x }};</Say></Response>"));
        assert!(!proven("{{ x }}<Response></Response>"));
        assert!(!proven("<Response></Response>{{ x }}"));
    }

    #[test]
    fn markup_producing_expressions_and_other_statements_are_not() {
        assert!(!proven("<Response>{{ From | escape }}</Response>"));
        assert!(!proven("<Response>{{ From | upper | e }}</Response>"));
        assert!(!proven(
            "<Response>{{ x | replace(\"a\", y | e) }}</Response>"
        ));
        assert!(!proven("<Response>{{ range(3) }}</Response>"));
        assert!(!proven(
            "<Response>{% for x in y %}{{ x }}{% endfor %}</Response>"
        ));
        assert!(!proven("<Response>{% set x = 1 %}{{ x }}</Response>"));
        assert!(!proven(
            "<Response>{% macro m() %}<Say/>{% endmacro %}{{ m() }}</Response>"
        ));
        assert!(!proven("<Response>{{ unclosed </Response>"));
    }

    #[test]
    fn too_many_paths_are_not() {
        let ifs = "{% if a %}<Say>a</Say>{% endif %}".repeat(7);
        assert!(!proven(&format!("<Response>{ifs}</Response>")));
        let ifs = "{% if a %}<Say>a</Say>{% endif %}".repeat(6);
        assert!(proven(&format!("<Response>{ifs}</Response>")));
    }
}
