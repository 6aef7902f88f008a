//! XML escaping of template values: markup characters become entities, and characters XML 1.0
//! forbids even as entities (most control characters) become U+FFFD, so output stays well-formed.

/// Writes `value` to `out`, escaped for XML text and for single- or double-quoted attributes, in
/// runs rather than per character.
pub fn escape_to(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    // Everything replaced is ASCII, or U+FFFE/U+FFFF (bytes EF BF BE/BF): a byte scan finds it all
    // without decoding characters, and every position it stops at is a character boundary.
    let bytes = value.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (replacement, len) = match bytes[i] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\'' => ("&apos;", 1),
            b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            0..=0x1F => ("\u{FFFD}", 1),
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => ("\u{FFFD}", 3),
            _ => {
                i += 1;
                continue;
            }
        };
        out.write_str(&value[last..i])?;
        out.write_str(replacement)?;
        i += len;
        last = i;
    }
    out.write_str(&value[last..])
}

/// Returns `value` escaped for XML (see [`escape_to`]).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    // Writing to a String cannot fail.
    let _ = escape_to(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// True for characters that may not appear in an XML 1.0 document at all, escaped or not: the
    /// per-character reading the byte scan is held to.
    fn forbidden_in_xml(c: char) -> bool {
        matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
    }

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
        fn escapes_exactly_what_a_character_by_character_escape_does(s in prop_oneof![
            any::<String>(),
            // Every byte the scan stops at, and neighbours of U+FFFE/U+FFFF sharing their lead byte.
            "[a<>&'\"\t\n\r\u{0}-\u{1f}\u{7f}\u{fffe}\u{ffff}\u{fffd}\u{feff}\u{f000}é😀]{0,30}",
        ]) {
            let expected: String = s
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&apos;".to_string(),
                    c if forbidden_in_xml(c) => "\u{FFFD}".to_string(),
                    c => c.to_string(),
                })
                .collect();
            prop_assert_eq!(escape(&s), expected);
        }

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
