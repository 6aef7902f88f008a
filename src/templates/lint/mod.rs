//! The template lint: strict XML 1.0, the TwiML schema generated from Twilio's SDKs, every
//! `{% if %}` path of a template, channels and links across a set. Pure: no file I/O; loading
//! (`templates::load`) reads the files and hands their text here.
//!
//! - [`xml`]: well-formedness, as a conforming parser judges it.
//! - [`schema`]: the schema file and value types.
//! - [`document`]: one document against the schema of a channel.
//! - [`paths`]: the documents a template can render, from its source.
//! - [`links`]: where a relative link leads.
//! - [`proof`]: which templates' answers are well-formed whatever their values.
//! - [`set`]: a whole set: channels, links, every path of every template.
//! - [`size`]: loops that can write more than Twilio's 64 kB (a warning).

pub mod document;
pub mod links;
pub mod paths;
pub mod proof;
pub mod schema;
pub mod set;
pub mod size;
pub mod xml;

/// Which kind of webhook a template answers; the allowed verbs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Programmable Voice: `<Say>`, `<Gather>`, `<Dial>`, ...
    Voice,
    /// Programmable Messaging: `<Message>` and `<Redirect>`.
    Messaging,
}

impl Channel {
    /// The name the schema file and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Messaging => "messaging",
        }
    }
}

/// Stands for a `{{ expression }}` in a template path: a private-use character, so it is text to
/// an XML parser and never part of a name.
pub const EXPRESSION_MARK: char = '\u{E000}';
