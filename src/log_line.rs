//! The text log line: tracing-subscriber's default layout (`time LEVEL target: message key=value`),
//! formatted without the default formatter's per-event costs, because every request writes one.
//!
//! The default formatter styles every part through `nu_ansi_term` even with colours off and formats
//! the timestamp from scratch each time; on the request path that was a tenth of the CPU per
//! request. Here the date and time up to the second are formatted once per second, and colour codes
//! are written only when the writer asks for them (a terminal).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The `--log-format text` event formatter.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events from the `log` crate (rustls, for one) carry their real target in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write_timestamp(&mut writer, SystemTime::now())?;
        let (colour, level) = level_label(meta.level());
        if writer.has_ansi_escapes() {
            write!(writer, " \x1b[{colour}m{level}\x1b[0m ")?;
        } else {
            writer.write_char(' ')?;
            writer.write_str(level)?;
            writer.write_char(' ')?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: writer.by_ref(),
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The SGR colour and the five-column label of a level, as the default formatter shows them.
fn level_label(level: &Level) -> (u8, &'static str) {
    match *level {
        Level::TRACE => (35, "TRACE"),
        Level::DEBUG => (34, "DEBUG"),
        Level::INFO => (32, " INFO"),
        Level::WARN => (33, " WARN"),
        Level::ERROR => (31, "ERROR"),
    }
}

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `2026-11-25T19:34:02.123456Z` (RFC 3339, UTC, microseconds).
fn write_timestamp(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1.clear();
            let ms = i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000;
            // `rfc3339` gives `...T19:34:02.000Z`; the part up to the second is what repeats.
            let full = crate::journal::time::rfc3339(ms);
            cached.1.push_str(&full[..full.len() - 5]);
            cached.0 = secs;
        }
        writer.write_str(&cached.1)
    })?;
    write!(writer, ".{:06}Z", since.subsec_micros())
}

/// Writes `message key=value ...` the way tracing-subscriber's default field formatter does:
/// strings quoted and escaped, `%` values as Display, `log.*` metadata fields left out.
struct Fields<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    fn separate(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    /// Writes `name=` and `write`'s text, which must be what `Debug` shows for `value`; a message
    /// goes through [`Visit::record_debug`] as usual.
    fn record_plain(
        &mut self,
        field: &Field,
        value: &dyn fmt::Debug,
        write: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        if field.name() == "message" {
            self.record_debug(field, value);
        } else {
            self.write_named(field, write);
        }
    }

    /// Writes `name=` and then `write`'s text, for every field but the message.
    fn write_named(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self.separate().and_then(|()| {
            self.writer.write_str(name)?;
            self.writer.write_char('=')?;
            write(&mut self.writer)
        });
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else if value
            .bytes()
            .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
        {
            // Printable ASCII without quotes or backslashes is its own `Debug` form, once quoted:
            // written directly, without the formatting machinery (most request fields are like this).
            self.record_plain(field, &value, |w| {
                w.write_char('"')?;
                w.write_str(value)?;
                w.write_char('"')
            });
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_plain(field, &value, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_plain(field, &value, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_plain(field, &value, |w| {
            w.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() != "message" {
            return self.write_named(field, |w| write_value(w, value));
        }
        if self.result.is_err() {
            return;
        }
        // A message may quote text from outside; control characters (terminal escapes, line
        // breaks) are written escaped so one event stays one line.
        self.result = self
            .separate()
            .and_then(|()| write!(NoControl(&mut self.writer), "{value:?}"));
    }
}

thread_local! {
    /// Scratch space for a `Debug`/`Display` field value, reused so a line allocates nothing.
    static VALUE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes a `?value` or `%value` field so it cannot pass for more fields or another line: as it is
/// when it is one bare token (printable ASCII without space, `"`, `\` or `=`) or already a quoted
/// and escaped string (`?some_str`), otherwise quoted and escaped. A request path such as
/// `/x" reason="forged` therefore stays inside its own quotes.
fn write_value(w: &mut Writer<'_>, value: &dyn fmt::Debug) -> fmt::Result {
    VALUE.with(|cell| {
        let Ok(mut text) = cell.try_borrow_mut() else {
            return write_value_text(w, &format!("{value:?}"));
        };
        text.clear();
        write!(text, "{value:?}")?;
        write_value_text(w, &text)
    })
}

fn write_value_text(w: &mut Writer<'_>, text: &str) -> fmt::Result {
    if is_bare(text) || is_quoted_literal(text) {
        w.write_str(text)
    } else {
        write!(w, "{text:?}")
    }
}

fn is_bare(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| matches!(b, b'!'..=b'~') && !matches!(b, b'"' | b'\\' | b'='))
}

/// True for `"..."` in which every `"` and `\` inside is escaped and nothing is a control
/// character: what `Debug` writes for a string.
fn is_quoted_literal(text: &str) -> bool {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            // An escape takes the next character with it; a lone one at the end is not a literal.
            '\\' if chars.next().is_none() => return false,
            '\\' => {}
            '"' => return false,
            c if c.is_control() => return false,
            _ => {}
        }
    }
    true
}

/// Passes text through with control characters written as `\u{..}` escapes.
struct NoControl<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for NoControl<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(char::is_control) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_unicode())?;
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// What `f` logs through a subscriber using `format`, with the timestamp cut off.
    fn logged<F>(format: F, f: impl FnOnce()) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| line.split_once(' ').map_or(line, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sample_events() {
        let sid = "SM1\"quoted\"";
        tracing::info!(
            target: "twiml_failover::request",
            method = %http::Method::POST,
            path = "/sms",
            status = 200u16,
            latency_us = 45u64,
            call_sid = None::<&str>,
            message_sid = Some(sid),
            fallback = false,
        );
        tracing::warn!(template = "sms", error = %"bad \"thing\"", "template failed; answered");
        tracing::info!(
            plain = "a b~c",
            backslash = "a\\b",
            accented = "héllo 😀",
            control = "tab\there\u{7f}",
            empty = "",
            negative = -3i64,
            yes = true,
            big = u64::MAX,
            message = 17u64,
        );
        tracing::info!(message = true, n = 0u64);
        let span = tracing::info_span!("conn", peer = 7);
        span.in_scope(|| tracing::debug!(r#type = "x", "in a span"));
    }

    #[test]
    fn lines_match_the_default_formatter() {
        let ours = logged(TextLine, sample_events);
        let default = logged(
            tracing_subscriber::fmt::format().with_ansi(false),
            sample_events,
        );
        // The one difference: a Display value that is not one bare token is quoted (below).
        assert_eq!(
            ours,
            default.replace(r#"error=bad "thing""#, r#"error="bad \"thing\"""#)
        );
        assert!(ours.contains("message_sid=\"SM1\\\"quoted\\\"\""), "{ours}");
        assert!(
            ours.contains(r#"control="tab\there\u{7f}" empty="" negative=-3"#),
            "{ours}"
        );
        assert_eq!(ours.lines().count(), 5, "{ours}");
    }

    #[test]
    fn values_cannot_forge_fields_or_lines() {
        let forged = "/x\" reason=\"forged";
        let ours = logged(TextLine, || {
            tracing::info!(
                path = forged,
                shown = %forged,
                debug = ?forged,
                line = %"a\nWARN x: fake",
                bare = %"/sms",
                method = %http::Method::POST,
                "done"
            );
        });
        assert_eq!(
            ours,
            r#" INFO twiml_failover::log_line::tests: done path="/x\" reason=\"forged" shown="/x\" reason=\"forged" debug="/x\" reason=\"forged" line="a\nWARN x: fake" bare=/sms method=POST"#
        );
    }

    #[test]
    fn a_message_stays_one_line_without_terminal_escapes() {
        let ours = logged(TextLine, || {
            tracing::error!("a message with\u{1b}[31m an escape\nand a line break");
        });
        assert_eq!(
            ours,
            "ERROR twiml_failover::log_line::tests: a message with\\u{1b}[31m an escape\\u{a}and a line break"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = UNIX_EPOCH + Duration::new(1_795_635_242, 123_456_000);
        let mut out = String::new();
        write_timestamp(&mut out, at).unwrap();
        // The cached second must not leak into the next second's line.
        write_timestamp(&mut out, at + Duration::from_secs(1)).unwrap();
        assert_eq!(
            out,
            "2026-11-25T19:34:02.123456Z2026-11-25T19:34:03.123456Z"
        );
    }
}
