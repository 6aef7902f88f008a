//! Log output that never blocks a request: lines go into a bounded in-memory buffer that a
//! background thread writes out in batches; when the buffer is full, lines are dropped and counted.
//!
//! One `write(2)` per request line cost about as much as the rest of the request; batching
//! turns thousands of lines into one write. When idle, a line is written at once; while lines keep
//! coming (a write less than [`COALESCE`] ago), the writer waits up to [`COALESCE`] to take them
//! together. Warnings and errors cut the wait short, and [`LogGuard`] writes out the rest on exit
//! (waiting at most [`EXIT_WAIT`] for a stuck log reader).
//! A process killed with SIGKILL loses at most the last [`COALESCE`] of lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a busy writer thread waits after the first buffered line, so lines arriving meanwhile
/// go out in the same write.
pub const COALESCE: Duration = Duration::from_millis(10);

/// Bytes buffered at most; beyond it new lines are dropped (and counted) instead of waiting.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    /// Lines dropped because the buffer was full, not yet reported.
    dropped: u64,
    /// The writer thread has been told there is something to write.
    signalled: bool,
    /// Write out what is left and stop.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes behind, still fine to write.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one formatted line; `urgent` lines wake the writer thread at once.
    fn push(&self, line: &[u8], urgent: bool) {
        let mut state = self.lock();
        if state.buffer.len() + line.len() > MAX_BUFFERED {
            state.dropped += 1;
            return;
        }
        state.buffer.extend_from_slice(line);
        // Only the first line after a write (or an urgent one) signals: a wake-up is a system call.
        if !state.signalled || urgent {
            state.signalled = true;
            drop(state);
            self.wake.notify_one();
        }
    }
}

/// The [`MakeWriter`] handed to the tracing subscriber.
#[derive(Clone)]
pub struct BufferedLog {
    shared: Arc<Shared>,
}

/// Writes out everything still buffered and stops the writer thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `out` and returns the subscriber's writer and the guard.
pub fn buffered<W: Write + Send + 'static>(out: W) -> (BufferedLog, LogGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    });
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_loop(&worker, out))
        .ok();
    let guard = LogGuard {
        shared: shared.clone(),
        thread,
    };
    (BufferedLog { shared }, guard)
}

fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    let mut last_write: Option<Instant> = None;
    loop {
        let mut state = shared.lock();
        while !state.signalled && !state.closed {
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let busy = last_write.is_some_and(|at| at.elapsed() < COALESCE);
        if busy && !state.closed {
            // Let the lines of the next few milliseconds join this write.
            state = shared
                .wake
                .wait_timeout(state, COALESCE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut state.buffer, &mut spare);
        let dropped = std::mem::take(&mut state.dropped);
        let closed = state.closed;
        state.signalled = false;
        drop(state);
        // A broken stderr must not stop the server; the lines are lost either way.
        let _ = out.write_all(&spare);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "twiml-failover: {dropped} log line(s) dropped: log output could not keep up"
            );
        }
        let _ = out.flush();
        last_write = Some(Instant::now());
        spare.clear();
        if closed {
            return;
        }
    }
}

/// How long exiting waits for the last lines to be written; a log reader that stopped reading
/// must not keep the process from exiting.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + EXIT_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// One event's writer: tracing-subscriber writes each formatted line with a single `write_all`.
pub struct LineWriter {
    shared: Arc<Shared>,
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.push(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedLog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            shared: self.shared.clone(),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back after the guard is gone.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let out = Captured::default();
        let (log, guard) = buffered(out.clone());
        for i in 0..1000 {
            log.make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_blocking() {
        let shared = Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        };
        // No writer thread: nothing drains, so the buffer fills.
        let line = vec![b'x'; 1024];
        for _ in 0..(MAX_BUFFERED / 1024 + 10) {
            shared.push(&line, false);
        }
        let state = shared.lock();
        assert_eq!(state.buffer.len(), MAX_BUFFERED);
        assert_eq!(state.dropped, 10);
    }

    /// An output whose reader never reads: every write blocks until the test ends.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut released = released.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_neither_blocks_lines_nor_exit() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (log, guard) = buffered(Stuck(gate.clone()));
        // Three buffers' worth: the writer thread takes at most one batch and then blocks for good,
        // so lines past that must be dropped; a line that waited instead would hang the test.
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..(3 * MAX_BUFFERED / line.len()) {
            log.make_writer().write_all(&line).unwrap();
        }
        assert!(log.shared.lock().buffer.len() <= MAX_BUFFERED);
        // Returns (after EXIT_WAIT) although the writer thread is still blocked.
        drop(guard);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    #[test]
    fn dropped_lines_are_reported() {
        let out = Captured::default();
        let (log, guard) = buffered(out.clone());
        log.shared.lock().dropped = 3;
        log.make_writer().write_all(b"after\n").unwrap();
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("after\n"), "{text}");
        assert!(text.contains("3 log line(s) dropped"), "{text}");
    }
}
