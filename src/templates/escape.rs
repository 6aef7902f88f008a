//! XML escaping of template values: markup characters become entities, and characters XML 1.0
//! forbids even as entities (most control characters) become U+FFFD, so output stays well-formed.

/// Appends `value` to `out`, escaped for XML text and for single- or double-quoted attributes.
pub fn escape_into(out: &mut String, value: &str) {
    // Writing to a String cannot fail.
    let _ = escape_to(out, value);
}

/// Writes `value` to `out`, escaped as [`escape_into`] does, in runs rather than per character.
pub fn escape_to(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    let mut last = 0;
    for (i, c) in value.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            '\t' | '\n' | '\r' => continue,
            c if forbidden_in_xml(c) => "\u{FFFD}",
            _ => continue,
        };
        out.write_str(&value[last..i])?;
        out.write_str(replacement)?;
        last = i + c.len_utf8();
    }
    out.write_str(&value[last..])
}

/// Returns `value` escaped for XML (see [`escape_into`]).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value);
    out
}

/// True for characters that may not appear in an XML 1.0 document at all, escaped or not.
pub fn forbidden_in_xml(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"</Message><Redirect a="1" b='2'>&x</Redirect>"#),
            "&lt;/Message&gt;&lt;Redirect a=&quot;1&quot; b=&apos;2&apos;&gt;&amp;x&lt;/Redirect&gt;"
        );
    }

    #[test]
    fn replaces_forbidden_characters() {
        assert_eq!(
            escape("a\u{0}b\u{1F}c\td\ne\rf\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}c\td\ne\rf\u{FFFD}"
        );
        assert_eq!(escape("héllo 😀 مرحبا"), "héllo 😀 مرحبا");
    }

    proptest! {
        #[test]
        fn escaped_text_is_well_formed_xml(s in any::<String>()) {
            let doc = format!("<Response a='{0}' b=\"{0}\">{0}</Response>", escape(&s));
            let mut reader = quick_xml::Reader::from_str(&doc);
            let mut depth = 0;
            loop {
                match reader.read_event() {
                    Ok(quick_xml::events::Event::Start(_)) => depth += 1,
                    Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                    Ok(quick_xml::events::Event::Text(t)) => {
                        prop_assert!(!t.xml_content(quick_xml::XmlVersion::Implicit1_0).contains('<'));
                    }
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => prop_assert!(false, "{e}: {doc}"),
                }
            }
            prop_assert_eq!(depth, 0);
            prop_assert!(!escape(&s).contains('<'));
        }
    }
}
