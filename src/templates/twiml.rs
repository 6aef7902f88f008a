//! TwiML documents as other parts of the service judge them (the drill, a rendered answer): one
//! strict, schema-checked verdict. Pure; the rules live in [`super::lint`].

pub use super::lint::document::{Link, Problem, Report, MAX_DOCUMENT_BYTES};
pub use super::lint::{Channel, EXPRESSION_MARK};

/// Checks well-formedness (a conforming XML 1.0 parser's verdict), the `<Response>` root and, when
/// `channel` is given, the schema of that channel. Collects the links when `channel` is given.
pub fn lint(doc: &str, channel: Option<Channel>) -> Report {
    super::lint::document::check(doc, channel)
}

/// What Twilio does with an answer of a given media type (the Content-Type without parameters,
/// lower case): "TwiML for Programmable Voice" and "TwiML for Programmable Messaging" list the same
/// three XML types; a voice answer in `text/plain` is executed when it is TwiML and read out
/// otherwise, a messaging one is texted back as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `text/xml`, `application/xml`, `text/html`: parsed as TwiML.
    Xml,
    /// `text/plain`.
    Plain,
}

/// The [`Media`] of `essence`; `None` for a type Twilio never reads TwiML from (JSON, audio, ...).
pub fn media(essence: &str) -> Option<Media> {
    match essence {
        "text/xml" | "application/xml" | "text/html" => Some(Media::Xml),
        "text/plain" => Some(Media::Plain),
        _ => None,
    }
}
