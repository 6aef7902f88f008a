//! Whether the upstream's answer can go to Twilio: a 2xx, a content type Twilio reads TwiML from
//! in a charset that means the same as UTF-8 for this body, at most 64 kB, and valid TwiML for the
//! webhook's channel by the same check a template's answer passes. What goes on is the document and
//! the app's cookies; the Content-Type is always the primary's own `text/xml; charset=utf-8`, never
//! the app's parameters. Pure.

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::HeaderValue;

use super::Reason;
use crate::net;
use crate::twilio::document::{self, MAX_DOCUMENT_BYTES};
use crate::twilio::media::Media;
use crate::twilio::Channel;

/// An upstream answer Twilio can use.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The upstream's 2xx status.
    pub status: u16,
    /// The document, byte for byte.
    pub body: Bytes,
    /// Each `Set-Cookie` line of the app's answer, in order: Twilio keeps the conversation's
    /// state in them (per From/To pair for messaging).
    pub cookies: Vec<HeaderValue>,
}

impl From<net::Response> for Answered {
    fn from(response: net::Response) -> Answered {
        Answered {
            status: response.status,
            cookies: response
                .headers
                .get_all(SET_COOKIE)
                .iter()
                .cloned()
                .collect(),
            body: response.body,
        }
    }
}

/// Charsets in which an ASCII-only body means what it means in UTF-8 (the defaults of older
/// servers, e.g. a Java servlet's ISO-8859-1), so such an answer can be relabelled UTF-8 exactly.
const ASCII_SUPERSETS: [&str; 6] = [
    "us-ascii",
    "ascii",
    "iso-8859-1",
    "latin1",
    "iso-8859-15",
    "windows-1252",
];

/// The status alone: what a status callback's answer needs (Twilio ignores its body).
pub fn judge_status(response: &net::Response) -> Result<(), Reason> {
    match response.status {
        200..=299 => Ok(()),
        500..=599 => Err(Reason::Status5xx),
        400..=499 => Err(Reason::Status4xx),
        _ => Err(Reason::StatusOther),
    }
}

/// Judges a webhook's answer for `channel` (`None`: well-formed with a `<Response>` root).
pub fn judge(response: net::Response, channel: Option<Channel>) -> Result<Answered, Reason> {
    judge_status(&response)?;
    let content_type: mime::Mime = response
        .header("content-type")
        .and_then(|v| v.parse().ok())
        .ok_or(Reason::ContentType)?;
    let media = Media::of(&content_type.essence_str().to_ascii_lowercase());
    // Twilio executes a call's text/plain answer when it is TwiML (else it reads it out and hangs
    // up); a message's is texted back as it is, so relabelling it XML would change what happens.
    let as_twiml = match media {
        Some(Media::Xml) => true,
        Some(Media::Plain) => channel == Some(Channel::Voice),
        None => false,
    };
    let charset = content_type
        .get_param(mime::CHARSET)
        .map(|c| c.as_str().to_ascii_lowercase());
    let same_as_utf8 = match charset.as_deref() {
        None | Some("utf-8" | "utf8") => true,
        Some(c) => ASCII_SUPERSETS.contains(&c) && response.body.is_ascii(),
    };
    if !as_twiml || !same_as_utf8 {
        return Err(Reason::ContentType);
    }
    if response.body.len() > MAX_DOCUMENT_BYTES {
        return Err(Reason::TooLarge);
    }
    // Plain text that is not TwiML is not a broken document but another kind of answer.
    let unusable = match media {
        Some(Media::Plain) => Reason::ContentType,
        _ => Reason::InvalidTwiml,
    };
    let Ok(doc) = std::str::from_utf8(&response.body) else {
        return Err(unusable);
    };
    if !document::check(doc, channel).problems.is_empty() {
        return Err(unusable);
    }
    Ok(Answered::from(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: Option<&str>, body: &str) -> net::Response {
        let mut headers = http::HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert("content-type", ct.parse().unwrap());
        }
        net::Response {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    const SAY: &str =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Hi</Say></Response>";
    const MSG: &str = "<Response><Message>Hi</Message></Response>";
    const XML: Option<&str> = Some("text/xml; charset=utf-8");

    #[test]
    fn valid_twiml_for_the_channel_passes_with_its_cookies() {
        let mut r = response(200, XML, SAY);
        r.headers
            .append(SET_COOKIE, "step=2; Max-Age=14400".parse().unwrap());
        r.headers
            .append(SET_COOKIE, "session=a1; HttpOnly".parse().unwrap());
        let ok = judge(r, Some(Channel::Voice)).unwrap();
        assert_eq!((ok.status, &ok.body[..]), (200, SAY.as_bytes()));
        assert_eq!(
            ok.cookies,
            ["step=2; Max-Age=14400", "session=a1; HttpOnly"]
        );
        assert!(judge(
            response(200, Some("application/xml"), MSG),
            Some(Channel::Messaging)
        )
        .is_ok());
    }

    #[test]
    fn each_twiml_type_and_charset_twilio_reads_as_utf8_passes() {
        let voice = Some(Channel::Voice);
        for ct in [
            "text/xml",
            "TEXT/XML;CHARSET=UTF-8",
            "application/xml; charset=\"utf-8\"",
            "text/html; charset=utf-8",
            "text/xml; charset=ISO-8859-1",
            "text/xml; charset=us-ascii; x=\"<script>\"",
            "text/plain; charset=utf-8",
        ] {
            assert!(judge(response(200, Some(ct), SAY), voice).is_ok(), "{ct}");
        }
    }

    #[test]
    fn other_types_and_charsets_are_refused() {
        let voice = Some(Channel::Voice);
        let sms = Some(Channel::Messaging);
        let accented = "<Response><Say>caf\u{e9}</Say></Response>";
        for (ct, body, channel) in [
            ("text/html; charset=utf-7; x=\"<script>\"", SAY, voice),
            ("text/xml; charset=utf-16", SAY, voice),
            ("text/xml; charset=iso-8859-1", accented, voice),
            ("text/xml; charset=", SAY, voice),
            ("text/xml; charset=\"utf-8", SAY, voice),
            ("application/json", SAY, voice),
            ("audio/mpeg", SAY, voice),
            ("text/plain", MSG, sms),
            ("text/plain", SAY, None),
            ("text/plain", "Hello there", voice),
            ("xml", SAY, voice),
        ] {
            assert_eq!(
                judge(response(200, Some(ct), body), channel).unwrap_err(),
                Reason::ContentType,
                "{ct}"
            );
        }
        assert!(judge(response(200, XML, accented), voice).is_ok());
    }

    #[test]
    fn each_kind_of_unusable_answer_has_its_reason() {
        let voice = Some(Channel::Voice);
        let cases = [
            (response(500, XML, SAY), voice, Reason::Status5xx),
            (response(404, XML, SAY), voice, Reason::Status4xx),
            (response(302, XML, SAY), voice, Reason::StatusOther),
            (response(200, None, SAY), voice, Reason::ContentType),
            (
                response(200, Some("application/json"), SAY),
                voice,
                Reason::ContentType,
            ),
            (
                response(200, XML, "<Response><Say>"),
                voice,
                Reason::InvalidTwiml,
            ),
            (response(200, XML, "<Reply/>"), None, Reason::InvalidTwiml),
            (
                response(200, XML, SAY),
                Some(Channel::Messaging),
                Reason::InvalidTwiml,
            ),
            (
                response(
                    200,
                    XML,
                    &format!("<Response><Say>{}</Say></Response>", "a".repeat(64_000)),
                ),
                voice,
                Reason::TooLarge,
            ),
        ];
        for (response, channel, reason) in cases {
            assert_eq!(judge(response, channel).unwrap_err(), reason);
        }
    }
}
