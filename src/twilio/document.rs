//! One TwiML document judged against the schema of a channel: root, nesting, attribute names and
//! values, text, and the links it sends Twilio to next. Pure.
//!
//! The document may be one `{% if %}` path of a template, where [`EXPRESSION_MARK`] stands for each
//! `{{ expression }}`: a value holding a mark is of unknown type until it is rendered (its
//! well-formedness is checked then), and a link holding one is judged by its fixed part only.

use roxmltree::Node;

use super::schema::{Element, Schema, ValueType, SCHEMA};
use super::{xml, Channel, EXPRESSION_MARK};

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset into the document.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// For a missing end tag, where the element still open was opened (byte offset of its `<`).
    pub opened: Option<usize>,
}

/// A URL in the document that Twilio fetches TwiML from next, entities decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Byte offset of the value (or the element for text).
    pub offset: usize,
    /// The URL as Twilio would read it; may hold [`EXPRESSION_MARK`]s.
    pub target: String,
    /// Where it stands, for messages: `<Gather action>` or `<Redirect>`.
    pub place: String,
}

/// What a document holds besides problems: its links and the verbs that tell its channel.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems; empty when the document is fine.
    pub problems: Vec<Problem>,
    /// Links, in document order (only when judged against a channel).
    pub links: Vec<Link>,
    /// Tags directly inside `<Response>`, with their offsets.
    pub verbs: Vec<(String, usize)>,
}

/// Largest TwiML document Twilio accepts (error 11750).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1000;

/// Deeper nesting of elements than this is reported, not judged: the walk recurses per level (SSML
/// such as `<prosody>` may nest in itself, and 64 kB hold 3,000 levels of it).
pub const MAX_ELEMENT_DEPTH: usize = 100;

/// Checks well-formedness and the `<Response>` root, and, when `channel` is given, everything the
/// schema says for that channel.
pub fn check(doc: &str, channel: Option<Channel>) -> Report {
    let mut report = Report::default();
    if doc.starts_with('\u{FEFF}') {
        report.problem(0, "byte order mark before the XML (Twilio error 12100)");
    }
    let tree = match xml::parse(doc) {
        Ok(tree) => tree,
        Err(e) => {
            report.problems.push(Problem {
                offset: e.offset,
                message: e.message,
                opened: e.opened,
            });
            return report;
        }
    };
    let root = tree.root_element();
    let root_tag = qname(doc, root);
    if root_tag != "Response" {
        report.problem(
            root.range().start,
            format!("the root element must be <Response>, not <{root_tag}>"),
        );
        return report;
    }
    report.verbs = root
        .children()
        .filter(|n| n.is_element())
        .map(|n| (qname(doc, n).to_string(), n.range().start))
        .collect();
    if let Some(channel) = channel {
        let mut walk = Walk {
            doc,
            schema: &SCHEMA,
            channel,
            report: &mut report,
        };
        walk.element(root, SCHEMA.root(channel), 0);
    }
    report
}

impl Report {
    fn problem(&mut self, offset: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            offset,
            message: message.into(),
            opened: None,
        });
    }
}

struct Walk<'r, 'd> {
    doc: &'d str,
    schema: &'static Schema,
    channel: Channel,
    report: &'r mut Report,
}

impl Walk<'_, '_> {
    fn element(&mut self, node: Node<'_, '_>, spec: &Element, depth: usize) {
        if depth >= MAX_ELEMENT_DEPTH {
            self.report.problem(
                node.range().start,
                format!("elements nest more than {MAX_ELEMENT_DEPTH} deep here"),
            );
            return;
        }
        self.attributes(node, spec);
        self.text(node, spec);
        for child in node.children().filter(Node::is_element) {
            let tag = qname(self.doc, child);
            match self.schema.child(spec, tag) {
                Some((_, child_spec)) => self.element(child, child_spec, depth + 1),
                None => {
                    let message = self.placement(spec, tag);
                    self.report.problem(child.range().start, message);
                }
            }
        }
    }

    /// Why `<tag>` may not stand inside `parent`, naming what may.
    fn placement(&self, parent: &Element, tag: &str) -> String {
        let here = self.channel;
        let other = match here {
            Channel::Voice => Channel::Messaging,
            Channel::Messaging => Channel::Voice,
        };
        let allowed = self.schema.child_tags(parent);
        let allowed_text = if allowed.is_empty() {
            format!("<{}> allows no elements inside", parent.tag)
        } else {
            format!(
                "allowed inside <{}>: {}",
                parent.tag,
                allowed
                    .iter()
                    .map(|t| format!("<{t}>"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if !self.schema.has_tag(here, tag) && self.schema.has_tag(other, tag) {
            return format!(
                "<{tag}> is {} TwiML, not allowed in a {} template ({allowed_text})",
                other.as_str(),
                here.as_str()
            );
        }
        if !self.schema.has_tag(here, tag) {
            let prefix = format!("{}:", here.as_str());
            let mut tags: Vec<&str> = self
                .schema
                .elements
                .iter()
                .filter(|(id, _)| id.starts_with(&prefix))
                .map(|(_, e)| e.tag.as_str())
                .collect();
            tags.sort_unstable();
            tags.dedup();
            let hint = did_you_mean(tag, &allowed)
                .or_else(|| did_you_mean(tag, &tags))
                .map(|s| format!("; did you mean <{s}>?"))
                .unwrap_or_default();
            return format!(
                "<{tag}> is not a TwiML {} element{hint} ({allowed_text})",
                here.as_str()
            );
        }
        format!(
            "<{tag}> is not allowed inside <{}> ({allowed_text})",
            parent.tag
        )
    }

    fn attributes(&mut self, node: Node<'_, '_>, spec: &Element) {
        for attr in node.attributes() {
            let name = &self.doc[attr.range_qname()];
            let offset = attr.range().start;
            let Some(ty) = spec.attributes.get(name) else {
                let names: Vec<&str> = spec.attributes.keys().map(String::as_str).collect();
                let hint = did_you_mean(name, &names)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        if names.is_empty() {
                            format!("; <{}> takes no attributes", spec.tag)
                        } else {
                            format!("; it takes {}", names.join(", "))
                        }
                    });
                self.report.problem(
                    offset,
                    format!("`{name}` is not an attribute of <{}>{hint}", spec.tag),
                );
                continue;
            };
            let value = attr.value();
            let place = format!("<{} {name}>", spec.tag);
            self.value(attr.range_value().start, value, ty, &place);
        }
    }

    fn text(&mut self, node: Node<'_, '_>, spec: &Element) {
        let mut text = String::new();
        let mut offset = None;
        for t in node.children().filter(Node::is_text) {
            text.push_str(t.text().unwrap_or_default());
            offset.get_or_insert(t.range().start);
        }
        let offset = offset.unwrap_or(node.range().start);
        let blank = text.trim().is_empty();
        match &spec.text {
            None if !blank => self.report.problem(
                offset,
                format!("text is not allowed directly inside <{}>", spec.tag),
            ),
            None => {}
            Some(t) if blank && t.required => self.report.problem(
                node.range().start,
                format!("<{}> needs its {} as text", spec.tag, kind(&t.value)),
            ),
            Some(_) if blank => {}
            Some(t) => {
                let place = format!("<{}>", spec.tag);
                self.value(offset, &text, &t.value, &place);
            }
        }
    }

    fn value(&mut self, offset: usize, value: &str, ty: &ValueType, place: &str) {
        if ty.is_link() {
            self.report.links.push(Link {
                offset,
                target: value.trim().to_string(),
                place: place.to_string(),
            });
        }
        // A value from an expression is only known at render time.
        if value.contains(EXPRESSION_MARK) {
            return;
        }
        if let Some(why) = ty.problem(value) {
            self.report
                .problem(offset, format!("{place} is {value:?}: {why}"));
        }
    }
}

fn kind(ty: &ValueType) -> &'static str {
    match ty {
        ValueType::Link {} | ValueType::Url {} => "URL",
        _ => "value",
    }
}

/// The element's name as written (prefix included).
fn qname<'d>(doc: &'d str, node: Node<'_, '_>) -> &'d str {
    let start = node.range().start + 1;
    let rest = &doc[start.min(doc.len())..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The closest of `candidates` to a misspelt `name` (case, `_`/`-` and small typos forgiven).
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let wanted = norm(name);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&wanted, &norm(c)), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(doc: &str, channel: Channel) -> Vec<String> {
        check(doc, Some(channel))
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn accepts_good_voice_and_messaging() {
        let voice = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Gather action="menu" numDigits="1"><Say voice="alice">Press <emphasis>1</emphasis> &amp; wait</Say></Gather>
<Dial action="/dial-status" timeout="20"><Number>+15550100</Number></Dial><Redirect>/voice?a=1&amp;b=2</Redirect></Response>"#;
        assert_eq!(messages(voice, Channel::Voice), Vec::<String>::new());
        let links: Vec<_> = check(voice, Some(Channel::Voice))
            .links
            .into_iter()
            .map(|l| l.target)
            .collect();
        assert_eq!(links, ["menu", "/dial-status", "/voice?a=1&b=2"]);
        let sms =
            "<Response><Message>Thanks &lt;3<Media>https://x/y.png</Media></Message></Response>";
        assert_eq!(messages(sms, Channel::Messaging), Vec::<String>::new());
        assert!(messages("<Response/>", Channel::Messaging).is_empty());
    }

    #[test]
    fn names_what_is_allowed_and_suggests() {
        let m = messages("<Response><Say>hi</Say></Response>", Channel::Messaging);
        assert!(m[0].contains("<Say> is voice TwiML"), "{m:?}");
        let m = messages("<Response><Message>hi</Message></Response>", Channel::Voice);
        assert!(m[0].contains("messaging TwiML"), "{m:?}");
        let m = messages("<Response><Sya>hi</Sya></Response>", Channel::Voice);
        assert!(m[0].contains("did you mean <Say>"), "{m:?}");
        let m = messages(
            "<Response><Gather numdigits=\"1\"/></Response>",
            Channel::Voice,
        );
        assert!(
            m[0].contains("`numdigits` is not an attribute of <Gather>; did you mean `numDigits`?"),
            "{m:?}"
        );
        let m = messages(
            "<Response><Gather><Dial>1</Dial></Gather></Response>",
            Channel::Voice,
        );
        assert!(m[0].contains("not allowed inside <Gather>"), "{m:?}");
        let m = messages("<Response>hello</Response>", Channel::Voice);
        assert!(m[0].contains("text is not allowed"), "{m:?}");
        let m = messages(
            "<Response><Message><Redirect>x</Redirect></Message></Response>",
            Channel::Messaging,
        );
        assert!(!m[0].contains("voice"), "{m:?}");
    }

    #[test]
    fn judges_values_but_not_expressions() {
        for (doc, expect) in [
            (
                "<Response><Gather method=\"PUSH\"/></Response>",
                "one of GET, POST",
            ),
            (
                "<Response><Gather numDigits=\"abc\"/></Response>",
                "whole number",
            ),
            ("<Response><Gather input=\"keypad\"/></Response>", "keypad"),
            ("<Response><Redirect/></Response>", "needs its URL"),
        ] {
            let m = messages(doc, Channel::Voice).join("; ");
            assert!(m.contains(expect), "{doc}: {m}");
        }
        let doc = format!("<Response><Gather numDigits=\"{EXPRESSION_MARK}\"/></Response>");
        assert!(messages(&doc, Channel::Voice).is_empty());
    }

    #[test]
    fn rejects_bad_roots() {
        for (doc, expect) in [
            ("<Reply/>", "root element must be <Response>"),
            ("\u{FEFF}<Response/>", "byte order mark"),
            ("<Response><Say>a</Play></Response>", "not well-formed"),
        ] {
            let m = messages(doc, Channel::Voice).join("; ");
            assert!(m.contains(expect), "{doc:?}: {m}");
        }
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        let nested = |n: usize| {
            format!(
                "<Response><Say>{}x{}</Say></Response>",
                "<prosody>".repeat(n),
                "</prosody>".repeat(n)
            )
        };
        let fine = messages(&nested(MAX_ELEMENT_DEPTH - 2), Channel::Voice);
        assert!(fine.is_empty(), "{fine:?}");
        let deep = nested(3300);
        // Half the stack of the blocking thread a reload runs on (tokio's 2 MiB).
        let found = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || messages(&deep, Channel::Voice))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("nest more than 100 deep"), "{found:?}");
    }
}
