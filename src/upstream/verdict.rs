//! Whether the upstream's answer can go to Twilio unchanged: a 2xx, a TwiML content type, at most
//! 64 kB, and valid TwiML for the webhook's channel by the same check a template's answer passes.
//! Pure.

use bytes::Bytes;
use http::HeaderValue;

use super::Reason;
use crate::net;
use crate::templates::twiml::{self, Channel, MAX_DOCUMENT_BYTES};

/// An upstream answer Twilio can use, as it came.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The upstream's 2xx status.
    pub status: u16,
    /// The upstream's content type.
    pub content_type: Option<HeaderValue>,
    /// The document.
    pub body: Bytes,
}

impl From<net::Response> for Answered {
    fn from(response: net::Response) -> Answered {
        Answered {
            status: response.status,
            content_type: response.headers.get(http::header::CONTENT_TYPE).cloned(),
            body: response.body,
        }
    }
}

/// The content types Twilio parses as TwiML (voice and messaging alike).
const TWIML_TYPES: [&str; 3] = ["text/xml", "application/xml", "text/html"];

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
    let media_type = response
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !media_type.is_some_and(|m| TWIML_TYPES.contains(&m.as_str())) {
        return Err(Reason::ContentType);
    }
    if response.body.len() > MAX_DOCUMENT_BYTES {
        return Err(Reason::TooLarge);
    }
    let Ok(doc) = std::str::from_utf8(&response.body) else {
        return Err(Reason::InvalidTwiml);
    };
    if !twiml::lint(doc, channel).problems.is_empty() {
        return Err(Reason::InvalidTwiml);
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
    const XML: Option<&str> = Some("text/xml; charset=utf-8");

    #[test]
    fn valid_twiml_for_the_channel_passes_unchanged() {
        let ok = judge(response(200, XML, SAY), Some(Channel::Voice)).unwrap();
        assert_eq!((ok.status, &ok.body[..]), (200, SAY.as_bytes()));
        assert_eq!(ok.content_type.unwrap(), "text/xml; charset=utf-8");
        let msg = "<Response><Message>Hi</Message></Response>";
        assert!(judge(
            response(200, Some("application/xml"), msg),
            Some(Channel::Messaging)
        )
        .is_ok());
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
