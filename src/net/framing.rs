//! Whether an HTTP/1.1 answer is framed unambiguously: not both `Content-Length` and
//! `Transfer-Encoding`, and nothing after its end in what the connection delivered with it. hyper
//! reads an answer by its framing and keeps quiet about anything else, so these checks read the
//! bytes themselves. Pure.
//!
//! Bytes after an answer mean the server and this client disagree on where it ended: on a kept-alive
//! connection they would be read as the head of the next request's answer (a desynchronised
//! connection, and one caller's answer served to another). RFC 9112 §6.1 asks a client to close a
//! connection whose answer carried both lengths.

use http::header::{HeaderMap, CONTENT_LENGTH, TRANSFER_ENCODING};

/// Why an answer's framing cannot be trusted.
pub fn ambiguous(headers: &HeaderMap) -> Option<String> {
    (headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING))
        .then(|| "both Content-Length and Transfer-Encoding".to_string())
}

/// How many bytes followed the answer at the start of `received`; `None` when that cannot be told
/// (the answer is incomplete, does not parse here, or ends when the connection closes), so only a
/// positive finding ever fails an answer. `head_request`: the answer to a `HEAD` has no body.
pub fn trailing(received: &[u8], head_request: bool) -> Option<usize> {
    answer_len(received, head_request).map(|end| received.len() - end)
}

/// The length of the answer at the start of `bytes`, informational (1xx) heads included.
fn answer_len(bytes: &[u8], head_request: bool) -> Option<usize> {
    let mut at = 0;
    loop {
        // hyper's own limit on an answer's header lines.
        let mut slots = [httparse::EMPTY_HEADER; 100];
        let mut head = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(len) = head.parse(bytes.get(at..)?).ok()? else {
            return None;
        };
        at += len;
        let code = head.code?;
        // hyper skips these and reads the next head.
        if (100..200).contains(&code) && code != 101 {
            continue;
        }
        if head_request || matches!(code, 101 | 204 | 304) {
            return Some(at);
        }
        let values = |name: &'static str| {
            head.headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap_or(""))
        };
        if values("transfer-encoding").next().is_some() {
            let last = values("transfer-encoding")
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|c| !c.is_empty())?;
            return match last.eq_ignore_ascii_case("chunked") {
                true => chunked_end(bytes, at),
                // Read until the connection closes: nothing can follow.
                false => None,
            };
        }
        let mut length = None;
        for value in values("content-length").flat_map(|v| v.split(',')) {
            let n: usize = value.trim().parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
        return at.checked_add(length?).filter(|end| *end <= bytes.len());
    }
}

/// Where a chunked body that starts at `at` ends, its trailer section included.
fn chunked_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let httparse::Status::Complete((len, size)) =
            httparse::parse_chunk_size(bytes.get(at..)?).ok()?
        else {
            return None;
        };
        at += len;
        if size == 0 {
            break;
        }
        at = at.checked_add(usize::try_from(size).ok()?)?;
        if bytes.get(at..at.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
    // Trailer fields, one a line, until an empty line.
    loop {
        let line = bytes.get(at..)?;
        let end = memchr::memmem::find(line, b"\r\n")?;
        at += end + 2;
        if end == 0 {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nA: b\r\n\r\n";

    #[test]
    fn nothing_after_a_whole_answer() {
        assert_eq!(trailing(OK, false), Some(0));
        assert_eq!(trailing(CHUNKED, false), Some(0));
        let informational = [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], OK].concat();
        assert_eq!(trailing(&informational, false), Some(0));
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        assert_eq!(trailing(head, true), Some(0));
        assert_eq!(trailing(b"HTTP/1.1 204 No Content\r\n\r\n", false), Some(0));
    }

    #[test]
    fn bytes_after_the_end_are_counted() {
        assert_eq!(trailing(&[OK, b"HTTP/1.1 200"].concat(), false), Some(12));
        assert_eq!(trailing(&[CHUNKED, b"\r\n"].concat(), false), Some(2));
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nokX";
        assert_eq!(trailing(twice, false), Some(1));
    }

    #[test]
    fn what_cannot_be_told_is_never_a_finding() {
        for unknown in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokX",
            b"HTTP/1.1 200 OK\r\n\r\nread until close",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"not http at all",
        ] {
            assert_eq!(
                trailing(unknown, false),
                None,
                "{:?}",
                String::from_utf8_lossy(unknown)
            );
        }
    }

    #[test]
    fn both_lengths_are_ambiguous() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, "2".parse().unwrap());
        assert_eq!(ambiguous(&h), None);
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(ambiguous(&h).is_some());
    }
}
