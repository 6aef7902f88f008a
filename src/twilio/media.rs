//! The media types Twilio reads an answer as. Pure.

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

impl Media {
    /// The [`Media`] of `essence`; `None` for a type Twilio never reads TwiML from (JSON, audio,
    /// ...).
    pub fn of(essence: &str) -> Option<Media> {
        match essence {
            "text/xml" | "application/xml" | "text/html" => Some(Media::Xml),
            "text/plain" => Some(Media::Plain),
            _ => None,
        }
    }
}
