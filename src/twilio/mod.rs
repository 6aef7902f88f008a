//! Twilio's vocabulary, shared by the request path, the template lint, upstream mode, the drill,
//! `numbers` and the journal: the two channels, a number's two URLs ([`Role`]), what a TwiML document must be ([`document`], [`xml`], [`schema`]),
//! the media types Twilio reads TwiML from ([`media`]) and its connection overrides
//! ([`overrides`]). Pure, and a leaf: it imports nothing else of the crate, so the engines that
//! speak Twilio share it without reaching into each other.
//!
//! - [`channel`]: voice or messaging, and which a webhook is.
//! - [`xml`]: well-formedness, as a conforming parser judges it.
//! - [`schema`]: the TwiML schema generated from Twilio's SDKs.
//! - [`document`]: one document against the schema of a channel (the verdict).
//! - [`media`]: what Twilio does with an answer's Content-Type.
//! - [`overrides`]: `#ct= #rt= #tt= #rc= #rp=` in a webhook URL.
//! - [`role`]: which of a number's two URLs a server answers.

pub mod channel;
pub mod document;
pub mod media;
pub mod overrides;
pub mod role;
pub mod schema;
pub mod xml;

pub use channel::Channel;
pub use role::Role;

/// Stands for a `{{ expression }}` in a template path: a private-use character, so it is text to
/// an XML parser and never part of a name. [`document`] judges paths holding it, so it lives with
/// the verdict rather than with the template lint that writes it.
pub const EXPRESSION_MARK: char = '\u{E000}';

/// The response header this server adds to an answer, naming where it came from (`upstream`,
/// `template`, `degraded; reason=...`): written by the request path, read by the drill. Twilio
/// ignores it.
pub const SOURCE_HEADER: &str = "x-twiml-failover-source";
