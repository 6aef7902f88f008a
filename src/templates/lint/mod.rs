//! The template lint: every `{% if %}` path of a template judged as a TwiML document (strict XML
//! 1.0 and the schema generated from Twilio's SDKs, both [`crate::twilio`]'s), channels and links
//! across a set. Pure: no file I/O; loading (`templates::load`) reads the files and hands their text
//! here.
//!
//! - [`paths`]: the documents a template can render, from its source.
//! - [`links`]: where a relative link leads.
//! - [`proof`]: which templates' answers are well-formed whatever their values.
//! - [`set`]: a whole set: channels, links, every path of every template.
//! - [`size`]: loops that can write more than Twilio's 64 kB (a warning).

pub mod links;
pub mod paths;
pub mod proof;
pub mod set;
pub mod size;
