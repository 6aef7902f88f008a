//! TwiML documents as other parts of the service judge them (the drill, a rendered answer): one
//! strict, schema-checked verdict. Pure; the rules live in [`super::lint`].

pub use super::lint::document::{Link, Problem, Report, MAX_DOCUMENT_BYTES};
pub use super::lint::{Channel, EXPRESSION_MARK};

/// Checks well-formedness (a conforming XML 1.0 parser's verdict), the `<Response>` root and, when
/// `channel` is given, the schema of that channel. Collects the links when `channel` is given.
pub fn lint(doc: &str, channel: Option<Channel>) -> Report {
    super::lint::document::check(doc, channel)
}
