//! Where `serve`'s log lines go and what they look like: tracing-subscriber's own text and JSON
//! formatters, written to stderr by tracing-appender's lossy non-blocking writer. Not pure: [`init`]
//! installs the process-wide subscriber and starts the writer thread.
//!
//! No request waits on a log write. A formatted line goes into a bounded channel
//! ([`BUFFERED_LINES`]) that the writer thread empties; when it is full the line is dropped and
//! counted. The writer thread collects what it takes from the channel in a buffer and writes it out
//! when the channel is empty, so a busy server makes one write(2) per batch, not one per line.
//! Dropped lines are reported by a line on stderr and by `twiml_failover_log_lines_dropped_total`
//! (read from [`dropped_lines`]).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing-subscriber's default text layout: `time LEVEL target: message key=value ...`.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl LogFormat {
    /// Each format by the name `--log-format` takes (`serve` and `monitor` alike), the default first.
    pub const NAMES: &'static [(&'static str, LogFormat)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

/// Lines waiting for the writer thread at most; a line beyond them is dropped and counted. A request
/// line is about 300 bytes, so a stalled log reader costs at most about 5 MiB; the channel's empty
/// slots take 512 KiB (tracing-appender's default of 128,000 lines would take 4 MiB of slots).
pub const BUFFERED_LINES: usize = 16 * 1024;

/// Bytes the writer thread collects before it writes, when lines come faster than it writes them.
const BATCH_BYTES: usize = 64 * 1024;

/// The least time between two writes while lines keep coming. tracing-appender flushes whenever
/// it has emptied the channel, which under load was after about 13 lines (one write(2) each, and
/// its thread spinning in `sched_yield` between lines on the server's CPU); waiting out the rest of
/// this interval first makes it one write per interval. A line therefore reaches stderr at most
/// about two intervals late, and a SIGKILL loses at most that much.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(5);

/// The running server's drop count, for `/metrics`. Process-wide, like the subscriber it counts for.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because log output could not keep up (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The writer thread. Dropping it writes out the lines still queued; tracing-appender waits about a
/// second at most for a log reader that stopped reading, so exit never hangs on one.
#[must_use = "dropping it stops the writer thread"]
pub struct Logging {
    _worker: WorkerGuard,
}

/// Logs to stderr from now on at the level `TWIML_FAILOVER_LOG` sets (`info` by default), without
/// colour (see `Cargo.toml`). Keep the returned [`Logging`] until the service has shut down.
pub fn init(format: LogFormat) -> Logging {
    let filter =
        EnvFilter::try_from_env("TWIML_FAILOVER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, worker, dropped) = non_blocking(io::stderr());
    // Only the first `init` of a process installs a subscriber, so only its counter matters.
    let _ = DROPPED.set(dropped);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_timer(Timestamp);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Logging { _worker: worker }
}

/// tracing-appender's lossy writer around `out` as `serve` uses it, the guard of its thread and its
/// drop counter (public for `benches/micro.rs`).
pub fn non_blocking<W: Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard, ErrorCounter) {
    // The counter exists only once the writer does, and the writer thread's output reports it.
    let counter = Arc::new(OnceLock::new());
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(Batched {
            out: BufWriter::with_capacity(BATCH_BYTES, out),
            dropped: counter.clone(),
            reported: 0,
            last_write: None,
        });
    let dropped = writer.error_counter();
    let _ = counter.set(dropped.clone());
    (writer, worker, dropped)
}

/// The writer thread's output. tracing-appender writes each line it takes from the channel and
/// flushes once the channel is empty; the buffer turns those lines into one write, a flush soon
/// after the last write waits for [`WRITE_INTERVAL`] to pass first, and each flush says how many
/// lines were dropped since the last one.
struct Batched<W: Write> {
    out: BufWriter<W>,
    dropped: Arc<OnceLock<ErrorCounter>>,
    reported: usize,
    last_write: Option<Instant>,
}

impl<W: Write> Write for Batched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let dropped = self.dropped.get().map_or(0, ErrorCounter::dropped_lines);
        if dropped > self.reported {
            writeln!(
                self.out,
                "twiml-failover: {} log line(s) dropped: log output could not keep up",
                dropped - self.reported
            )?;
            self.reported = dropped;
        }
        // Lines that come meanwhile wait in the channel, and go out with the next write.
        if let Some(wait) = self
            .last_write
            .and_then(|at| WRITE_INTERVAL.checked_sub(at.elapsed()))
        {
            std::thread::sleep(wait);
        }
        let written = self.out.flush();
        self.last_write = Some(Instant::now());
        written
    }
}

/// The default timer's `2026-11-25T19:34:02.123456Z` (RFC 3339, UTC, microseconds), with the part
/// up to the second formatted once a second: formatting the whole date on every line was 2.1 k of
/// the 9.4 k instructions a request's line took (callgrind).
/// Public for `benches/micro.rs`.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp;

thread_local! {
    /// The second last formatted on this thread, and its `2026-11-25T19:34:02` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_timestamp(w, SystemTime::now())
    }
}

fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|cell| {
        let mut second = cell.borrow_mut();
        if second.0 != since.as_secs() {
            let whole = humantime::format_rfc3339_seconds(now).to_string();
            // Without the `Z`: the fraction goes before it.
            second.1 = whole.trim_end_matches('Z').to_owned();
            second.0 = since.as_secs();
        }
        w.write_str(&second.1)
    })?;
    // The six digits by hand: `{:06}` goes through the padding machinery on every line.
    let mut fraction = *b".000000Z";
    let mut rest = since.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// An output the test reads back, whose writes wait while the gate is closed.
    #[derive(Clone)]
    struct Output {
        bytes: Arc<Mutex<Vec<u8>>>,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Output {
        fn new(open: bool) -> Output {
            Output {
                bytes: Arc::default(),
                open: Arc::new((Mutex::new(open), Condvar::new())),
            }
        }

        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Output {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let out = Output::new(true);
        let (mut writer, worker, dropped) = non_blocking(out.clone());
        for i in 0..1000 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(worker);
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
        assert_eq!(dropped.dropped_lines(), 0);
    }

    /// Counts the writes that reach it.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<usize>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_that_keep_coming_go_out_one_write_per_interval() {
        let out = Writes::default();
        let (mut writer, worker, _) = non_blocking(out.clone());
        let started = std::time::Instant::now();
        for i in 0..20_000 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        // The writer thread may still be writing after the loop: count the intervals up to the
        // moment it has written everything, not up to the last line sent (a fast loop sends all
        // 20,000 lines inside one interval).
        drop(worker);
        let intervals = started.elapsed().as_micros() / WRITE_INTERVAL.as_micros();
        let writes = *out.0.lock().unwrap();
        // The first flush goes out at once, then at most one per interval begun (the last one
        // partly); about 150 KiB of lines, so the 64 KiB buffer adds up to three writes of its own.
        let most = usize::try_from(intervals).unwrap() + 5;
        assert!(
            writes <= most,
            "{writes} writes for 20,000 lines in {intervals} intervals"
        );
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_instead_of_blocking_then_reports_them() {
        let out = Output::new(false);
        let (mut writer, worker, dropped) = non_blocking(out.clone());
        // More than the channel and the batch buffer hold while the output is stuck: a write that
        // waited instead of dropping would hang the test here.
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let sent = BUFFERED_LINES + BATCH_BYTES / line.len() + 1000;
        for _ in 0..sent {
            writer.write_all(&line).unwrap();
        }
        let lost = dropped.dropped_lines();
        assert!(lost >= 1000 - 2, "only {lost} of {sent} lines dropped");
        out.open();
        // Give the writer thread time to take the rest, then stop it.
        std::thread::sleep(Duration::from_millis(200));
        drop(worker);
        let text = out.text();
        let written = text.lines().filter(|l| l.starts_with("xxx")).count();
        assert_eq!(
            written + lost,
            sent,
            "every line is either written or counted"
        );
        assert!(
            text.contains(&format!("twiml-failover: {lost} log line(s) dropped")),
            "{}",
            &text[text.len().saturating_sub(300)..]
        );
    }

    #[test]
    fn timestamps_are_the_default_timers_rfc3339_utc_with_microseconds() {
        let at = UNIX_EPOCH + Duration::new(1_795_635_242, 123_456_789);
        let next = at + Duration::from_secs(1);
        let mut out = String::new();
        write_timestamp(&mut out, at).unwrap();
        out.push(' ');
        // The cached second must not leak into the next second's line.
        write_timestamp(&mut out, next).unwrap();
        let reference = |t| humantime::format_rfc3339_micros(t).to_string();
        assert_eq!(out, format!("{} {}", reference(at), reference(next)));
        assert_eq!(
            out,
            "2026-11-25T19:34:02.123456Z 2026-11-25T19:34:03.123456Z"
        );
    }

    #[test]
    fn a_line_has_the_default_layout() {
        let out = Output::new(true);
        let (writer, worker, _) = non_blocking(out.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_timer(Timestamp)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "twiml_failover::request", path = "/x\" a=\"b", status = 200u16);
        });
        drop(worker);
        let text = out.text();
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{text}");
        assert_eq!(
            rest,
            " INFO twiml_failover::request: path=\"/x\\\" a=\\\"b\" status=200\n"
        );
    }
}
