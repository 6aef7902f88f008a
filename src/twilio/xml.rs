//! Well-formedness as a conforming XML 1.0 parser judges it (namespaces included), with the
//! position of the first problem. Pure.
//!
//! `roxmltree` is the parser: strict, positions on every error, entities and character references
//! decoded. The property test in `tests/xml_oracle.rs` holds its verdicts to Python's expat.

use roxmltree::{Document, Error, ParsingOptions};

/// Why a document is not well-formed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotWellFormed {
    /// Byte offset into the document.
    pub offset: usize,
    /// What is wrong, for a template author.
    pub message: String,
    /// Where the element that should have been closed first was opened (its `<`), when the
    /// problem is a missing end tag; a caller names it in its own coordinates.
    pub opened: Option<usize>,
}

/// Parses `doc` strictly; the error names the first problem and its byte offset.
pub fn parse(doc: &str) -> Result<Document<'_>, NotWellFormed> {
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let tree = Document::parse_with_options(doc, options).map_err(|e| describe(doc, &e))?;
    beyond_roxmltree(doc, &tree)?;
    Ok(tree)
}

/// What roxmltree lets through and expat (the oracle) refuses: a malformed XML declaration, a bad
/// processing-instruction target, character references to code points XML forbids in attribute
/// values, and namespace declarations that unbind a prefix or hold whitespace.
// Long on purpose: one check per case where roxmltree and expat differ, each against the oracle's test.
fn beyond_roxmltree(doc: &str, tree: &Document<'_>) -> Result<(), NotWellFormed> {
    let fail = |offset: usize, message: &str| NotWellFormed {
        offset,
        message: format!("not well-formed XML: {message}"),
        opened: None,
    };
    let body_start = if doc.starts_with('\u{FEFF}') { 3 } else { 0 };
    if let Some(decl) = doc[body_start..].strip_prefix("<?xml") {
        let target = decl
            .split(|c: char| is_xml_space(c) || c == '?')
            .next()
            .unwrap_or_default();
        if !target.is_empty() && !is_name(&format!("xml{target}")) {
            return Err(fail(body_start, "bad processing instruction target"));
        }
        if decl.starts_with(is_xml_space) && !declaration_ok(decl) {
            return Err(fail(
                body_start,
                "malformed XML declaration (write <?xml version=\"1.0\" encoding=\"UTF-8\"?>)",
            ));
        }
    }
    // Each check below can only fail when the text holds what it looks for; most answers hold
    // none of it, and skip the walk (the check runs on every answer).
    let body = &doc[body_start..];
    let after_decl = match body.strip_prefix("<?xml") {
        Some(rest) if rest.starts_with(is_xml_space) => rest,
        _ => body,
    };
    let has_pi = after_decl.contains("<?");
    let has_wide = doc.bytes().any(|b| b >= 0xF0);
    let has_ns = doc.contains("xmlns");
    if doc.contains("&#") {
        char_refs(doc).map_err(|at| fail(at, &ampersand(&doc[at..])))?;
    }
    if !(has_pi || has_wide || has_ns) {
        return Ok(());
    }
    // roxmltree reads a declaration whose `<?xml` is followed by a tab or line break, not a space,
    // as a processing instruction named `xml`; it was judged above as the declaration it is.
    let declaration_at = (after_decl.len() < body.len()).then_some(body_start);
    for node in tree.descendants() {
        if node.is_pi() && Some(node.range().start) != declaration_at {
            let raw = &doc[node.range()];
            let target = raw[2..]
                .split(|c: char| is_xml_space(c) || c == '?')
                .next()
                .unwrap_or_default();
            let wide = target.chars().any(|c| c > '\u{FFFF}');
            if !is_name(target) || wide || target.eq_ignore_ascii_case("xml") {
                return Err(fail(
                    node.range().start,
                    "bad processing instruction target",
                ));
            }
        }
        if !node.is_element() {
            continue;
        }
        for ns in node.namespaces() {
            let bad = match ns.name() {
                Some(_) if ns.uri().is_empty() => true,
                // Expat refuses a space (literal whitespace is normalized to one) in a namespace URI.
                _ => ns.uri().contains(' '),
            };
            if bad {
                return Err(fail(node.range().start, "bad namespace declaration"));
            }
        }
        // XML 1.0's fifth edition allows names beyond the BMP; expat (and older editions) do not.
        let tag = &doc[node.range().start + 1..];
        let tag = &tag[..tag
            .find(|c: char| is_xml_space(c) || c == '/' || c == '>')
            .unwrap_or(tag.len())];
        if tag.chars().any(|c| c > '\u{FFFF}') {
            return Err(fail(node.range().start, NAME));
        }
        for attr in node.attributes() {
            if doc[attr.range_qname()].chars().any(|c| c > '\u{FFFF}') {
                return Err(fail(attr.range().start, NAME));
            }
        }
    }
    Ok(())
}

const NAME: &str =
    "a name holds a character beyond U+FFFF, which XML names may not (before XML 1.0 5th edition)";

/// What is wrong with the `&` that `at` starts with: a character reference naming a character XML
/// forbids, a malformed reference, one missing its `;`, or a raw `&`.
fn ampersand(at: &str) -> String {
    let body = &at[1..];
    let end = body
        .find(|c: char| matches!(c, ';' | '<' | '&' | '"' | '\'') || is_xml_space(c))
        .unwrap_or(body.len());
    let closed = body[end..].starts_with(';');
    let written = &at[..1 + end + usize::from(closed)];
    let name = &body[..end];
    if let Some(number) = name.strip_prefix('#') {
        let (digits, radix) = match number.strip_prefix('x') {
            Some(hex) => (hex, 16),
            None => (number, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return format!(
                "malformed character reference `{written}` (write `&#65;` or `&#x41;`, or `&amp;` \
                 for a literal `&`)"
            );
        }
        if !closed {
            return format!("character reference `{written}` lacks its `;`");
        }
        return format!("character reference `{written}` names a character XML 1.0 forbids");
    }
    if !closed && is_name(name) {
        return format!(
            "`{written}` lacks its `;` (write `{written};`, or `&amp;` for a literal `&`)"
        );
    }
    "a raw `&` is not allowed in XML (write `&amp;`)".to_string()
}

/// Checks every `&#...;` of a parsed document: outside comments, CDATA sections and processing
/// instructions (where `&` is literal) each is a real reference; `Err` at the first bad one.
fn char_refs(doc: &str) -> Result<(), usize> {
    let mut at = 0;
    while let Some(i) = doc[at..].find(['&', '<']) {
        at += i;
        let rest = &doc[at..];
        let literal_until = [("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>")]
            .iter()
            .find(|(open, _)| rest.starts_with(open))
            .map(|(_, close)| rest.find(close).map_or(rest.len(), |e| e + close.len()));
        if let Some(skip) = literal_until {
            at += skip;
            continue;
        }
        if !rest.starts_with("&#") {
            at += 1;
            continue;
        }
        let body = &rest[2..];
        let end = body.find(';').unwrap_or(body.len());
        let code = match body[..end].strip_prefix('x') {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => body[..end].parse::<u32>().ok(),
        };
        if !code.and_then(char::from_u32).is_some_and(is_xml_char) {
            return Err(at);
        }
        at += 2;
    }
    Ok(())
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn is_name_start(c: char) -> bool {
    matches!(c, ':' | 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start)
        && chars.all(|c| {
            is_name_start(c)
                || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
        })
}

/// The part of an XML declaration after `<?xml`: `version`, then optional `encoding` and
/// `standalone`, in that order, each `name = 'value'`.
fn declaration_ok(decl: &str) -> bool {
    let Some(end) = decl.find("?>") else {
        return false;
    };
    let mut rest = &decl[..end];
    let mut pseudo = |name: &str, valid: &dyn Fn(&str) -> bool, required: bool| -> bool {
        let trimmed = rest.trim_start_matches(is_xml_space);
        let had_space = trimmed.len() < rest.len();
        let Some(after) = trimmed.strip_prefix(name) else {
            return !required;
        };
        let after = after.trim_start_matches(is_xml_space);
        let Some(after) = after.strip_prefix('=') else {
            return false;
        };
        let after = after.trim_start_matches(is_xml_space);
        let Some(quote) = after.chars().next().filter(|q| *q == '"' || *q == '\'') else {
            return false;
        };
        let Some(close) = after[1..].find(quote) else {
            return false;
        };
        let ok = had_space && valid(&after[1..1 + close]);
        rest = &after[close + 2..];
        ok
    };
    // Expat takes any VersionNum characters, as XML 1.0's first editions did.
    let version = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    };
    let encoding = |v: &str| {
        let mut c = v.chars();
        c.next().is_some_and(|c| c.is_ascii_alphabetic())
            && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let standalone = |v: &str| v == "yes" || v == "no";
    pseudo("version", &version, true)
        && pseudo("encoding", &encoding, false)
        && pseudo("standalone", &standalone, false)
        && rest.chars().all(is_xml_space)
}

fn describe(doc: &str, e: &Error) -> NotWellFormed {
    let pos = e.pos();
    let mut offset = byte_offset(doc, pos.row, pos.col);
    let mut opened = None;
    let message = match e {
        Error::UnexpectedCloseTag(expected, actual, _) => {
            opened = open_elements(doc, offset).last().map(|(at, _)| *at);
            format!(
                "`</{actual}>` stands where `<{expected}>` is still open: close `<{expected}>` \
                 first with `</{expected}>`"
            )
        }
        // roxmltree places these at 1:1; the document ends at the end.
        Error::UnexpectedEndOfStream | Error::UnclosedRootNode => {
            offset = doc.len();
            match open_elements(doc, doc.len()).last() {
                Some((at, name)) => {
                    opened = Some(*at);
                    format!("the document ends while `<{name}>` is still open: close it with `</{name}>`")
                }
                None => "unexpected end of the document".to_string(),
            }
        }
        Error::MalformedEntityReference(_) if doc[offset..].starts_with('&') => {
            ampersand(&doc[offset..])
        }
        Error::MalformedEntityReference(_) => "malformed entity reference".to_string(),
        // roxmltree reads a `<` in a quoted value as the value ending without its quote.
        Error::InvalidAttributeValue(_) | Error::InvalidChar(b'"' | b'\'', b'<', _) => {
            "a raw `<` is not allowed in an attribute value (write `&lt;`)".to_string()
        }
        Error::UnknownEntityReference(name, _) => format!(
            "unknown entity `&{name};` (XML knows only &amp; &lt; &gt; &quot; &apos; and &#...;)"
        ),
        Error::NonXmlChar(c, _) => {
            format!("character U+{:04X} is not allowed in XML", *c as u32)
        }
        Error::DtdDetected => "a DOCTYPE is not allowed in TwiML".to_string(),
        Error::UnexpectedDeclaration(_) => {
            "the XML declaration may only stand once, at the very start".to_string()
        }
        other => {
            let text = other.to_string();
            text.replace(&format!(" at {pos}"), "")
        }
    };
    NotWellFormed {
        offset,
        message: format!("not well-formed XML: {message}"),
        opened,
    }
}

/// The elements open at `end` of a document well-formed before it, outermost first: the offset of
/// each start tag's `<`, and its name.
fn open_elements(doc: &str, end: usize) -> Vec<(usize, &str)> {
    let text = &doc[..end.min(doc.len())];
    let mut open = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find('<').map(|rel| i + rel) {
        let rest = &text[at..];
        let literal = [
            ("<!--", "-->"),
            ("<![CDATA[", "]]>"),
            ("<?", "?>"),
            ("<!", ">"),
        ]
        .into_iter()
        .find(|(start, _)| rest.starts_with(start));
        if let Some((_, close)) = literal {
            match rest.find(close) {
                Some(e) => i = at + e + close.len(),
                None => break,
            }
            continue;
        }
        // The tag ends at the first `>` outside a quoted attribute value.
        let mut quote = None;
        let Some(tag_end) = rest.char_indices().find_map(|(j, c)| match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                None
            }
            (Some(q), c) if c == q => {
                quote = None;
                None
            }
            (None, '>') => Some(at + j),
            _ => None,
        }) else {
            break;
        };
        let inner = &text[at + 1..tag_end];
        let name_of = |s: &'_ str| -> usize {
            s.find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .unwrap_or(s.len())
        };
        if let Some(closing) = inner.strip_prefix('/') {
            let name = &closing[..name_of(closing)];
            if let Some(pos) = open.iter().rposition(|(_, n)| *n == name) {
                open.truncate(pos);
            }
        } else if !inner.ends_with('/') {
            open.push((at, &inner[..name_of(inner)]));
        }
        i = tag_end + 1;
    }
    open
}

/// The byte offset of a 1-based row and character column.
fn byte_offset(doc: &str, row: u32, col: u32) -> usize {
    let line_start: usize = doc
        .split_inclusive('\n')
        .take(row.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let line = &doc[line_start.min(doc.len())..];
    let within = line
        .char_indices()
        .nth(col.saturating_sub(1) as usize)
        .map_or(line.len(), |(i, _)| i);
    line_start + within
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(doc: &str) -> NotWellFormed {
        parse(doc).map(|_| ()).unwrap_err()
    }

    #[test]
    fn a_missing_end_tag_names_where_its_element_was_opened() {
        let doc = "<Response>\n  <Say a=\"x>\">hi\n  <!-- <Play> -->\n</Response>";
        let e = error(doc);
        assert_eq!(&doc[e.offset..e.offset + 3], "</R", "{e:?}");
        assert!(
            e.message
                .contains("`</Response>` stands where `<Say>` is still open"),
            "{e:?}"
        );
        assert_eq!(&doc[e.opened.unwrap()..][..4], "<Say", "{e:?}");
        let doc = "<Response><Say>hi</Say>";
        let e = error(doc);
        assert_eq!(e.offset, doc.len(), "{e:?}");
        assert!(e.message.contains("`<Response>` is still open"), "{e:?}");
        assert_eq!(e.opened, Some(0));
    }

    #[test]
    fn names_the_raw_ampersand_and_its_position() {
        let doc = "<Response>\n<Gather action=\"https://e.com/g?a=1&b=2\"/></Response>";
        let e = error(doc);
        assert_eq!(&doc[e.offset..e.offset + 1], "&", "{e:?}");
        assert!(e.message.contains("raw `&`"), "{e:?}");
    }

    #[test]
    fn rejects_what_xml_forbids() {
        for doc in [
            "<a b=\"<\"/>",
            "<a>&#1;</a>",
            "<a b=\"&#1;\"/>",
            "<a 1b=\"x\"/>",
            "<a b=\"1\" b=\"2\"/>",
            "<a/><?xml version=\"1.0\"?>",
            "<a>\u{1}</a>",
            "<a><!-- a -- b --></a>",
            "<a>&foo;</a>",
            "<!DOCTYPE a><a/>",
        ] {
            assert!(parse(doc).is_err(), "{doc}");
        }
        assert!(parse("<?xml version=\"1.0\"?><a b='&amp;&#x41;'><![CDATA[<&]]></a>").is_ok());
    }

    /// Found by `tests/xml_oracle.rs`: expat takes any XML space after `<?xml`, roxmltree then sees a
    /// processing instruction named `xml`, which must not be judged as one.
    #[test]
    fn a_declaration_opened_by_a_tab_or_line_break_is_a_declaration() {
        for doc in [
            "<?xml\t\r\n version='1.0' standalone='yes'?><Response xmlns:a='d2' Say=\"\"></Response>",
            "<?xml\nversion=\"1.0\"?><R><?pi x?></R>",
        ] {
            assert!(parse(doc).is_ok(), "{doc:?}: {:?}", parse(doc).err());
        }
        assert!(parse("<?xml\nversion=\"1.0\"?><R><?xml x?></R>").is_err());
    }

    #[test]
    fn names_what_is_wrong_with_a_reference() {
        for (doc, expect) in [
            (
                "<a>&#1;</a>",
                "character reference `&#1;` names a character XML 1.0 forbids",
            ),
            (
                "<a b=\"&#0;\"/>",
                "character reference `&#0;` names a character XML 1.0 forbids",
            ),
            (
                "<a b='&#xFFFE;'/>",
                "`&#xFFFE;` names a character XML 1.0 forbids",
            ),
            (
                "<a>&#xD800;</a>",
                "`&#xD800;` names a character XML 1.0 forbids",
            ),
            (
                "<a>&#x110000;</a>",
                "`&#x110000;` names a character XML 1.0 forbids",
            ),
            ("<a>&#;</a>", "malformed character reference `&#;`"),
            ("<a b='&#xZZ;'/>", "malformed character reference `&#xZZ;`"),
            ("<a>&#65 x</a>", "character reference `&#65` lacks its `;`"),
            ("<a b='&amp'/>", "`&amp` lacks its `;`"),
            ("<a>& b</a>", "a raw `&`"),
            ("<a b='x?a=1&b=2'/>", "a raw `&`"),
            (
                "<a b='<'/>",
                "a raw `<` is not allowed in an attribute value",
            ),
            (
                "<a b=\"x<\"/>",
                "a raw `<` is not allowed in an attribute value",
            ),
        ] {
            let e = error(doc);
            assert!(e.message.contains(expect), "{doc}: {e:?}");
            assert!(doc[e.offset..].starts_with(['&', '<']), "{doc}: {e:?}");
        }
    }

    #[test]
    fn offsets_count_bytes_after_wide_characters() {
        let doc = "<a>é\n  é<b></a>";
        let e = error(doc);
        assert!(doc[e.offset..].starts_with("</a>") || doc[e.offset..].starts_with("a>"));
    }
}
