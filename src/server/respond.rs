//! Building the HTTP reply: every one carries a Content-Type (Twilio treats an answer without one
//! as a failure) and error bodies are short and say nothing about why a check failed. The TwiML in
//! it is a [`crate::templates::Answer`].

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The HTTP response every handler returns.
pub type Reply = Response<Full<Bytes>>;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const XML: HeaderValue = HeaderValue::from_static("text/xml; charset=utf-8");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

fn build(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Reply {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CACHE_CONTROL, NO_STORE);
    response
}

/// `200 text/xml` with a TwiML document.
pub fn twiml(document: String) -> Reply {
    build(StatusCode::OK, XML, Bytes::from(document))
}

/// The upstream's own answer: its status, document and every `Set-Cookie` line, typed as the
/// templates' answers are (the app's Content-Type parameters never reach Twilio).
pub fn upstream(answered: crate::upstream::Answered) -> Reply {
    let status = StatusCode::from_u16(answered.status).unwrap_or(StatusCode::OK);
    let mut response = build(status, XML, answered.body);
    for cookie in answered.cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// A short plain-text answer, e.g. `403 forbidden`.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    build(status, TEXT, body.into())
}

/// The fixed answer for each error status.
pub fn error(status: StatusCode) -> Reply {
    text(status, error_body(status))
}

/// The body of [`error`]'s answer: `render` prints it too, so its stdout is what `serve` sends.
pub fn error_body(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad request\n",
        StatusCode::FORBIDDEN => "forbidden\n",
        StatusCode::NOT_FOUND => "not found\n",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
        StatusCode::REQUEST_TIMEOUT => "request timeout\n",
        StatusCode::PAYLOAD_TOO_LARGE => "payload too large\n",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type\n",
        StatusCode::URI_TOO_LONG => "uri too long\n",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request header fields too large\n",
        StatusCode::SERVICE_UNAVAILABLE => "service unavailable\n",
        _ => "error\n",
    }
}

/// `405` naming the allowed methods.
pub fn method_not_allowed(allow: &'static str) -> Reply {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// `204` for status callbacks; still typed, so no proxy or client guesses.
pub fn no_content() -> Reply {
    build(StatusCode::NO_CONTENT, TEXT, Bytes::new())
}

/// `200` with the metrics exposition.
pub fn metrics(text: String) -> Reply {
    build(
        StatusCode::OK,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        Bytes::from(text),
    )
}
