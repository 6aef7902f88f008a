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
}

/// Parses `doc` strictly; the error names the first problem and its byte offset.
pub fn parse(doc: &str) -> Result<Document<'_>, NotWellFormed> {
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(doc, options).map_err(|e| describe(doc, &e))
}

/// True when `doc` is well-formed XML; the cheap question a rendered answer must pass.
pub fn well_formed(doc: &str) -> bool {
    parse(doc).is_ok()
}

fn describe(doc: &str, e: &Error) -> NotWellFormed {
    let pos = e.pos();
    let offset = byte_offset(doc, pos.row, pos.col);
    let message = match e {
        Error::MalformedEntityReference(_) => {
            let raw = doc[offset..].starts_with('&');
            if raw {
                "a raw `&` is not allowed in XML (write `&amp;`)".to_string()
            } else {
                "malformed entity reference".to_string()
            }
        }
        Error::InvalidAttributeValue(_) => {
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
    }
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
        assert!(well_formed(
            "<?xml version=\"1.0\"?><a b='&amp;&#x41;'><![CDATA[<&]]></a>"
        ));
    }

    #[test]
    fn offsets_count_bytes_after_wide_characters() {
        let doc = "<a>é\n  é<b></a>";
        let e = error(doc);
        assert!(doc[e.offset..].starts_with("</a>") || doc[e.offset..].starts_with("a>"));
    }
}
