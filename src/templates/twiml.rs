//! TwiML rules: which verbs and nouns Twilio documents, where each may nest, per channel. Pure.
//!
//! [`lint`] walks a document with quick-xml and reports every problem with its byte offset, plus the
//! relative links (`<Redirect>` targets and `action` attributes) that decide which templates are
//! messaging templates.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Which kind of webhook a template answers; the allowed verbs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Programmable Voice: `<Say>`, `<Gather>`, `<Dial>`, ...
    Voice,
    /// Programmable Messaging: `<Message>` and `<Redirect>` only.
    Messaging,
}

impl Channel {
    /// A lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Messaging => "messaging",
        }
    }
}

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset into the document.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A URL the document sends Twilio to next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Byte offset of the element that holds it.
    pub offset: usize,
    /// The URL as written.
    pub target: String,
}

/// What [`lint`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems; empty when the document is fine.
    pub problems: Vec<Problem>,
    /// Links, in document order.
    pub links: Vec<Link>,
}

/// Largest TwiML document Twilio accepts (error 11750).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1000;

/// Marker that stands for a template expression in a document being linted before rendering.
pub const EXPRESSION_MARK: char = '\u{E000}';

struct Spec {
    children: &'static [&'static str],
    text: bool,
}

const SSML: &[&str] = &[
    "break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w",
];
const VOICE_VERBS: &[&str] = &[
    "Say", "Play", "Pause", "Dial", "Record", "Gather", "Hangup", "Enqueue", "Leave", "Redirect",
    "Refer", "Reject", "Connect", "Start", "Stop", "Pay", "Echo",
];
const MESSAGING_VERBS: &[&str] = &["Message", "Redirect"];

fn voice_spec(name: &str) -> Option<Spec> {
    let (children, text): (&'static [&'static str], bool) = match name {
        "Response" => (VOICE_VERBS, false),
        "Say" => (SSML, true),
        "break" | "emphasis" | "lang" | "p" | "phoneme" | "prosody" | "s" | "say-as" | "sub"
        | "w" => (SSML, true),
        "Play" | "Redirect" | "Number" | "Conference" | "Sip" | "Sim" | "Queue" | "WhatsApp"
        | "Identity" | "ApplicationSid" | "Task" | "Room" | "Autopilot" => (&[], true),
        "Pause" | "Record" | "Hangup" | "Leave" | "Echo" | "Reject" | "Parameter" | "Language"
        | "Config" | "Recording" | "Conversation" => (&[], false),
        "Dial" => (
            &[
                "Number",
                "Client",
                "Conference",
                "Sip",
                "Sim",
                "Queue",
                "Application",
                "WhatsApp",
            ],
            true,
        ),
        "Client" => (&["Identity", "Parameter"], true),
        "Application" => (&["ApplicationSid", "Parameter"], false),
        "Gather" | "Prompt" => (&["Say", "Play", "Pause"], false),
        "Enqueue" => (&["Task"], true),
        "Refer" => (&["Sip"], false),
        "Connect" => (
            &[
                "Stream",
                "Conversation",
                "ConversationRelay",
                "Room",
                "VirtualAgent",
                "Autopilot",
                "AiSession",
            ],
            false,
        ),
        "Stream" | "Siprec" => (&["Parameter"], false),
        "ConversationRelay" => (&["Language", "Parameter"], false),
        "VirtualAgent" | "Transcription" | "AiSession" => (&["Config", "Parameter"], false),
        "Start" => (&["Stream", "Siprec", "Transcription", "Recording"], false),
        "Stop" => (&["Stream", "Siprec", "Transcription"], false),
        "Pay" => (&["Prompt", "Parameter"], false),
        _ => return None,
    };
    Some(Spec { children, text })
}

fn messaging_spec(name: &str) -> Option<Spec> {
    let (children, text): (&'static [&'static str], bool) = match name {
        "Response" => (MESSAGING_VERBS, false),
        "Message" => (&["Body", "Media"], true),
        "Body" | "Media" | "Redirect" => (&[], true),
        _ => return None,
    };
    Some(Spec { children, text })
}

fn spec(channel: Channel, name: &str) -> Option<Spec> {
    match channel {
        Channel::Voice => voice_spec(name),
        Channel::Messaging => messaging_spec(name),
    }
}

fn placement_problem(channel: Channel, parent: &str, child: &str) -> Option<String> {
    let parent_spec = spec(channel, parent)?;
    if parent_spec.children.contains(&child) {
        return None;
    }
    Some(match channel {
        Channel::Messaging if voice_spec(child).is_some() => format!(
            "<{child}> is a voice verb; messaging TwiML allows only <Message> and <Redirect> \
             (Twilio error 12200)"
        ),
        Channel::Voice if messaging_spec(child).is_some() && voice_spec(child).is_none() => {
            format!("<{child}> is messaging TwiML; not allowed in a voice template")
        }
        _ if spec(channel, child).is_none() => {
            format!("<{child}> is not a TwiML {} verb or noun", channel.as_str())
        }
        _ => format!("<{child}> is not allowed inside <{parent}>"),
    })
}

/// Checks well-formedness, the `<Response>` root and (when `channel` is given) the verbs, nouns and
/// nesting Twilio documents for that channel. Collects links either way.
pub fn lint(doc: &str, channel: Option<Channel>) -> Report {
    let mut report = Report::default();
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<String> = Vec::new();
    let mut seen_root = false;
    let mut seen_anything = false;
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(offset);
                report.problems.push(Problem {
                    offset: at,
                    message: format!("not well-formed XML: {e}"),
                });
                return report;
            }
        };
        match event {
            Event::Decl(_) => {
                if seen_anything {
                    report.problems.push(Problem {
                        offset,
                        message: "the XML declaration must come first".into(),
                    });
                }
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.name().as_ref().to_string();
                match stack.last() {
                    None if seen_root => report.problems.push(Problem {
                        offset,
                        message: format!("<{name}> after the <Response> root; only one root"),
                    }),
                    None if name != "Response" => report.problems.push(Problem {
                        offset,
                        message: format!("the root element must be <Response>, not <{name}>"),
                    }),
                    None => seen_root = true,
                    Some(parent) => {
                        if let Some(channel) = channel {
                            if let Some(message) = placement_problem(channel, parent, &name) {
                                report.problems.push(Problem { offset, message });
                            }
                        }
                    }
                }
                for attr in e.attributes() {
                    match attr {
                        Ok(attr) if attr.key.as_ref() == "action" => {
                            if let Ok(value) =
                                attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            {
                                report.links.push(Link {
                                    offset,
                                    target: value.into_owned(),
                                });
                            }
                        }
                        Ok(_) => {}
                        Err(err) => report.problems.push(Problem {
                            offset,
                            message: format!("bad attribute in <{name}>: {err}"),
                        }),
                    }
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(ref t) => {
                let text = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                text_event(&mut report, channel, &stack, offset, &text, !seen_anything);
            }
            Event::GeneralRef(ref r) => {
                let known = if r.is_char_ref() {
                    matches!(r.resolve_char_ref(), Ok(Some(c)) if !super::escape::forbidden_in_xml(c))
                } else {
                    matches!(r.as_ref(), "amp" | "lt" | "gt" | "quot" | "apos")
                };
                if !known {
                    report.problems.push(Problem {
                        offset,
                        message: format!("unknown or forbidden entity &{};", r.as_ref()),
                    });
                }
                text_event(&mut report, channel, &stack, offset, "&", false);
            }
            Event::CData(ref c) => {
                let text = c.as_ref().to_string();
                text_event(&mut report, channel, &stack, offset, &text, false);
            }
            Event::DocType(_) => report.problems.push(Problem {
                offset,
                message: "a DOCTYPE is not allowed in TwiML".into(),
            }),
            Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
        seen_anything = true;
    }
    if !seen_root {
        report.problems.push(Problem {
            offset: 0,
            message: "no <Response> root element".into(),
        });
    }
    if let Some(open) = stack.last() {
        report.problems.push(Problem {
            offset: doc.len(),
            message: format!("<{open}> is never closed"),
        });
    }
    report
}

fn text_event(
    report: &mut Report,
    channel: Option<Channel>,
    stack: &[String],
    offset: usize,
    text: &str,
    at_start: bool,
) {
    // Forbidden characters are C0 controls other than tab and newlines, and U+FFFE/U+FFFF (which
    // start with byte 0xEF): a byte scan rules them out before any character is decoded.
    let may_hold_forbidden = text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF);
    let forbidden = may_hold_forbidden
        .then(|| text.chars().find(|&c| super::escape::forbidden_in_xml(c)))
        .flatten();
    if let Some(c) = forbidden {
        report.problems.push(Problem {
            offset,
            message: format!("character U+{:04X} is not allowed in XML", c as u32),
        });
    }
    let blank = text.chars().all(char::is_whitespace);
    if at_start && !text.is_empty() && blank {
        report.problems.push(Problem {
            offset,
            message: "whitespace before the XML declaration or root (Twilio error 12100)".into(),
        });
        return;
    }
    if blank {
        return;
    }
    match stack.last() {
        None => report.problems.push(Problem {
            offset,
            message: "text outside the <Response> root".into(),
        }),
        Some(parent) => {
            if let Some(channel) = channel {
                if spec(channel, parent).is_some_and(|s| !s.text) {
                    report.problems.push(Problem {
                        offset,
                        message: format!("text is not allowed directly inside <{parent}>"),
                    });
                }
            }
            if parent == "Redirect" {
                report.links.push(Link {
                    offset,
                    target: text.trim().to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(doc: &str, channel: Channel) -> Vec<String> {
        lint(doc, Some(channel))
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn accepts_good_voice_and_messaging() {
        let voice = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Gather action="menu" numDigits="1"><Say voice="alice">Press <emphasis>1</emphasis> &amp; wait</Say></Gather>
<Dial action="/dial-status" timeout="20"><Number>+15550100</Number></Dial><Redirect>/voice</Redirect></Response>"#;
        assert_eq!(messages(voice, Channel::Voice), Vec::<String>::new());
        let links: Vec<_> = lint(voice, Some(Channel::Voice))
            .links
            .into_iter()
            .map(|l| l.target)
            .collect();
        assert_eq!(links, ["menu", "/dial-status", "/voice"]);
        let sms =
            "<Response><Message>Thanks &lt;3<Media>https://x/y.png</Media></Message></Response>";
        assert_eq!(messages(sms, Channel::Messaging), Vec::<String>::new());
        assert!(messages("<Response/>", Channel::Messaging).is_empty());
    }

    #[test]
    fn rejects_voice_verbs_in_messaging_and_vice_versa() {
        let m = messages("<Response><Say>hi</Say></Response>", Channel::Messaging);
        assert!(m[0].contains("12200"), "{m:?}");
        let m = messages("<Response><Message>hi</Message></Response>", Channel::Voice);
        assert!(m[0].contains("messaging TwiML"), "{m:?}");
        let m = messages("<Response><Speak>hi</Speak></Response>", Channel::Voice);
        assert!(m[0].contains("not a TwiML voice verb"), "{m:?}");
        let m = messages(
            "<Response><Gather><Dial>1</Dial></Gather></Response>",
            Channel::Voice,
        );
        assert!(m[0].contains("not allowed inside <Gather>"), "{m:?}");
        let m = messages("<Response>hello</Response>", Channel::Voice);
        assert!(m[0].contains("text is not allowed"), "{m:?}");
    }

    #[test]
    fn rejects_bad_documents() {
        for (doc, expect) in [
            (" <Response/>", "whitespace before"),
            ("<Reply/>", "root element must be <Response>"),
            ("<Response/><Response/>", "only one root"),
            ("<Response><Say>a</Play></Response>", "not well-formed"),
            (
                "<Response><Say>a &foo; b</Say></Response>",
                "unknown or forbidden entity",
            ),
            (
                "<Response><Say>a &#1; b</Say></Response>",
                "unknown or forbidden entity",
            ),
            ("<Response><Say>a", "never closed"),
            ("", "no <Response>"),
            ("<!DOCTYPE x><Response/>", "DOCTYPE"),
            ("<Response><Say>a\u{1}</Say></Response>", "U+0001"),
            ("<Response><Say>é\u{FFFE}</Say></Response>", "U+FFFE"),
            ("<Response><Say>\u{FFFF}</Say></Response>", "U+FFFF"),
            ("<Response><Say>\u{1F}\u{FFFD}</Say></Response>", "U+001F"),
        ] {
            let m = messages(doc, Channel::Voice).join("; ");
            assert!(m.contains(expect), "{doc:?}: {m}");
        }
    }
}
