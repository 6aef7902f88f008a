//! The proof that lets an answer skip the strict parse: a template is proven when every answer it
//! can render is well-formed XML, whatever the request's values are. Pure.
//!
//! A template is proven when
//! 1. its only blocks are `{% if %}` / `{% elif %}` / `{% else %}`, so the scanner's paths
//!    ([`super::paths`], which models MiniJinja's whitespace control) are every document it can
//!    render, each [`EXPRESSION_MARK`] standing for one printed value;
//! 2. every path is well-formed ([`xml::parse`]);
//! 3. every mark stands in text content or in a quoted attribute value that is not a namespace
//!    declaration, never in a tag, comment, CDATA section, processing instruction or DOCTYPE, and
//!    never where a value ending in `]` could meet a literal `>` (text may not hold `]]>`).
//!
//! Why 3 is enough: every printed value is escaped (`templates::escape`; the environment's
//! formatter escapes even values marked safe), so it holds no `<`, `>`, quote or raw `&`, only
//! whole `&amp;`-style references, and no character XML 1.0 forbids (controls, U+FFFE and U+FFFF
//! become U+FFFD; Rust strings hold no lone surrogates). Such a string, empty included, may stand
//! anywhere in text or in a quoted attribute value and leave the document well-formed, except
//! that its trailing `]`s could close a `]]>` with the text after it. A namespace URI is
//! constrained beyond that (not empty for a prefix, no space for expat), so it is refused.
//! Loops, `set`, `with`, `do` and `{% raw %}` are refused: their renders are not the listed paths.

use super::paths;
use crate::twilio::{xml, EXPRESSION_MARK};

/// Why a template is not proven; its answers keep the strict parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The scanner cannot list the template's paths.
    Unjudgeable(String),
    /// A block other than if/elif/else: the listed paths do not bound its renders.
    Statement(String),
    /// A path is not well-formed, whatever the values.
    NotWellFormed(String),
    /// An expression inside markup where escaping does not apply or cannot help.
    InMarkup(&'static str),
    /// An expression in a namespace declaration (`xmlns`, `xmlns:p`).
    InNamespace,
    /// An expression in text before `]`s and a `>`: a value ending in `]]` forms `]]>`.
    BeforeCdataEnd,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Unjudgeable(why) => write!(f, "{why}"),
            Reason::Statement(kw) => write!(
                f,
                "`{{% {kw} %}}`: only if/elif/else blocks are proven, this one is checked per answer"
            ),
            Reason::NotWellFormed(why) => write!(f, "a path is not well-formed: {why}"),
            Reason::InMarkup(place) => write!(f, "an expression inside {place}"),
            Reason::InNamespace => write!(f, "an expression in a namespace declaration"),
            Reason::BeforeCdataEnd => {
                write!(f, "an expression in text before `>`: a value ending in `]]` forms `]]>`")
            }
        }
    }
}

/// Where and why a template is not proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotProven {
    /// Byte offset into the template's source.
    pub offset: usize,
    /// Why.
    pub reason: Reason,
}

/// Proves that every answer `source` renders is well-formed XML, or says why it cannot.
pub fn prove(source: &str) -> Result<(), NotProven> {
    let unjudgeable = |e: paths::Unjudgeable| NotProven {
        offset: e.offset,
        reason: Reason::Unjudgeable(e.message),
    };
    let statements = paths::statements(source).map_err(unjudgeable)?;
    if let Some((offset, kw)) = statements
        .into_iter()
        .find(|(_, kw)| !matches!(*kw, "if" | "elif" | "else" | "endif"))
    {
        return Err(NotProven {
            offset,
            reason: Reason::Statement(kw.to_string()),
        });
    }
    for path in paths::paths(source).map_err(unjudgeable)? {
        let at = |offset: usize, reason: Reason| NotProven {
            offset: path.source_offset(offset),
            reason,
        };
        if let Err(e) = xml::parse(&path.doc) {
            return Err(at(e.offset, Reason::NotWellFormed(e.message)));
        }
        places(&path.doc).map_err(|(offset, reason)| at(offset, reason))?;
    }
    Ok(())
}

/// Checks where each mark of a well-formed `doc` stands; `Err` at the first one misplaced.
fn places(doc: &str) -> Result<(), (usize, Reason)> {
    let mut i = 0;
    while i < doc.len() {
        let rest = &doc[i..];
        if !rest.starts_with('<') {
            let end = rest.find('<').map_or(doc.len(), |e| i + e);
            text(&doc[i..end]).map_err(|m| (i + m, Reason::BeforeCdataEnd))?;
            i = end;
            continue;
        }
        let literal = [
            ("<!--", "-->", "a comment"),
            ("<![CDATA[", "]]>", "a CDATA section"),
            ("<?", "?>", "a processing instruction"),
            ("<!", ">", "a DOCTYPE"),
        ]
        .into_iter()
        .find(|(open, ..)| rest.starts_with(open));
        let end = match literal {
            Some((_, close, place)) => {
                let end = rest.find(close).map_or(doc.len(), |e| i + e + close.len());
                if let Some(m) = doc[i..end].find(EXPRESSION_MARK) {
                    return Err((i + m, Reason::InMarkup(place)));
                }
                end
            }
            None => tag(doc, i)?,
        };
        i = end;
    }
    Ok(())
}

/// Text content: `Err` with the offset of a mark that only `]`s and marks separate from a `>`.
fn text(run: &str) -> Result<(), usize> {
    for (m, _) in run.match_indices(EXPRESSION_MARK) {
        let after =
            run[m + EXPRESSION_MARK.len_utf8()..].trim_start_matches([EXPRESSION_MARK, ']']);
        if after.starts_with('>') {
            return Err(m);
        }
    }
    Ok(())
}

/// A start or end tag from its `<`: marks only in quoted values, not of `xmlns`; returns its end.
fn tag(doc: &str, start: usize) -> Result<usize, (usize, Reason)> {
    let mut name_from = start + 1;
    let mut i = start + 1;
    while let Some(c) = doc[i..].chars().next() {
        match c {
            '>' => return Ok(i + 1),
            '"' | '\'' => {
                let close = doc[i + 1..].find(c).map_or(doc.len(), |e| i + 1 + e);
                let name = doc[name_from..i]
                    .trim_end()
                    .trim_end_matches('=')
                    .trim_end()
                    .rsplit(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or_default();
                let value = &doc[i + 1..close];
                let namespace = name == "xmlns" || name.starts_with("xmlns:");
                if let Some(m) = value.find(EXPRESSION_MARK).filter(|_| namespace) {
                    return Err((i + 1 + m, Reason::InNamespace));
                }
                i = (close + 1).min(doc.len());
                name_from = i;
            }
            EXPRESSION_MARK => return Err((i, Reason::InMarkup("a tag"))),
            c => i += c.len_utf8(),
        }
    }
    Ok(doc.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(source: &str) -> Reason {
        prove(source).unwrap_err().reason
    }

    #[test]
    fn proves_text_and_attribute_values_across_branches() {
        for source in [
            "<Response><Say>{{ x }}</Say></Response>",
            "<Response><Say voice=\"{{ v }}\" loop='{{ n }}'>a {{ x }}{{ y }} b</Say></Response>",
            "{# note #}\n<?xml version=\"1.0\"?>\n<Response>\n{% if a %}\n  <Say>{{ x }}]</Say>\n\
             {% else %}{% if b %}\n<Gather numDigits=\"{{ d }}\">{% else %}<Gather>{% endif %}\
             </Gather>\n{%- endif %}</Response>\n",
            "<Response>{% if a %}<Say loop=\"2\">{% else %}<Say>{% endif %}{{ x }}</Say></Response>",
            "<Response><Say>{{ x }} ]] &gt; ]</Say><!-- literal, free --></Response>",
        ] {
            assert_eq!(prove(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn refuses_blocks_it_cannot_bound() {
        for (source, kw) in [
            ("<R>{% for m in M %}<S>{{ m }}</S>{% endfor %}</R>", "for"),
            ("<R>{% set y = x %}<S>{{ y }}</S></R>", "set"),
            ("<R>{% with y = x %}{{ y }}{% endwith %}</R>", "with"),
            ("<R>{% do x %}</R>", "do"),
            ("<R>{% raw %}{{ x }}{% endraw %}</R>", "raw"),
        ] {
            assert_eq!(reason(source), Reason::Statement(kw.into()), "{source}");
        }
        assert!(matches!(
            reason("<R>{% macro m() %}{% endmacro %}</R>"),
            Reason::Statement(_) | Reason::Unjudgeable(_)
        ));
        assert!(matches!(
            reason("<R>{{ x | safe }}</R>"),
            Reason::Unjudgeable(_)
        ));
    }

    #[test]
    fn refuses_paths_that_are_not_well_formed() {
        assert!(matches!(
            reason("<R>{% if a %}<S>{% endif %}</R>"),
            Reason::NotWellFormed(_)
        ));
        assert!(matches!(reason("<R a=\"&\"/>"), Reason::NotWellFormed(_)));
    }

    #[test]
    fn refuses_expressions_inside_markup() {
        for (source, place) in [
            ("<R><!-- {{ x }} --></R>", "a comment"),
            ("<R><![CDATA[{{ x }}]]></R>", "a CDATA section"),
            ("<R><?pi {{ x }}?></R>", "a processing instruction"),
            (
                "<?xml-stylesheet href=\"{{ v }}\"?><R/>",
                "a processing instruction",
            ),
        ] {
            assert_eq!(reason(source), Reason::InMarkup(place), "{source}");
        }
        // A mark in a tag or a DOCTYPE never parses; the scan still refuses it on its own.
        assert_eq!(places("<R \u{E000}/>"), Err((3, Reason::InMarkup("a tag"))));
        assert_eq!(
            places("<!DOCTYPE \u{E000}><R/>"),
            Err((10, Reason::InMarkup("a DOCTYPE")))
        );
    }

    #[test]
    fn refuses_namespace_declarations() {
        assert_eq!(reason("<R xmlns=\"{{ u }}\"/>"), Reason::InNamespace);
        assert_eq!(reason("<R xmlns:p='a{{ u }}'/>"), Reason::InNamespace);
        assert_eq!(prove("<R xmlns=\"urn:x\" a=\"{{ u }}\"/>"), Ok(()));
    }

    #[test]
    fn refuses_text_that_could_form_a_cdata_end() {
        for source in [
            "<R>{{ x }}></R>",
            "<R>{{ x }}]></R>",
            "<R>]{{ x }}]]{{ y }}></R>",
            "<R>]]{{ x }}{% if a %}>{% endif %}</R>",
        ] {
            assert_eq!(reason(source), Reason::BeforeCdataEnd, "{source}");
        }
        assert_eq!(prove("<R>{{ x }} ></R>"), Ok(()));
        assert_eq!(prove("<R a=\"{{ x }}]\">]></R>"), Ok(()));
    }

    #[test]
    fn offsets_point_into_the_source() {
        let source = "<R>\n{% if a %}\n<!-- {{ x }} -->\n{% endif %}</R>";
        let e = prove(source).unwrap_err();
        assert_eq!(&source[e.offset..e.offset + 2], "{{");
    }
}
