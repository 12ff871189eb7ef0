//! The access log: one line per request, under the target
//! `wasi_serve::access`, filtered by `RUST_LOG` like every other line.
//!
//! It is the only line a served request writes, so it takes a short way.
//! With the plain-text log (the default when stderr is a file or a pipe),
//! the line is formatted here, byte for byte as `tracing`'s formatter would
//! write it, and queued for the log's writer thread directly. Going through
//! the subscriber (its field visitors, its buffers, its clock) cost about 4%
//! of a greeter request's time; see docs/performance.md. With JSON or
//! coloured logs the line is an ordinary `tracing` event; in JSON its time
//! is a number, `elapsed_ms`, for whatever reads the log to compute with.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::MakeWriter;

/// The queue of the log's writer thread, when access lines are formatted
/// here; unset, they go through `tracing`.
static QUEUE: OnceLock<NonBlocking> = OnceLock::new();

/// Whether the log is JSON, where the time taken is a number.
static JSON: AtomicBool = AtomicBool::new(false);

/// From now on, access lines carry the time taken as `elapsed_ms`, a
/// number of milliseconds. Called by [`crate::logging::init`] for JSON.
pub(crate) fn elapsed_as_number() {
    JSON.store(true, Ordering::Relaxed);
}

/// From now on, access lines are formatted here and queued on `queue`.
/// Called by [`crate::logging::init`] for the uncoloured text format.
pub(crate) fn format_here(queue: NonBlocking) {
    let _ = QUEUE.set(queue);
}

/// Logs one answered request, unless `RUST_LOG` turns access lines off.
pub fn record(method: &Method, path: &str, status: StatusCode, elapsed: Duration) {
    if !tracing::enabled!(target: "wasi_serve::access", tracing::Level::INFO) {
        return;
    }
    let Some(queue) = QUEUE.get() else {
        event(method, path, status, elapsed);
        return;
    };
    thread_local! {
        /// This thread's line buffer and handle on the queue, both reused
        /// from one request to the next.
        static LINE: RefCell<(String, Option<NonBlocking>)> =
            const { RefCell::new((String::new(), None)) };
    }
    // `try_with`: a request cut off while its thread ends (a runtime shutting
    // down) is recorded from a destructor, maybe after this thread's local
    // values are gone; its line is then lost rather than the process.
    let _ = LINE.try_with(|cell| {
        let (line, writer) = &mut *cell.borrow_mut();
        line.clear();
        format_line(line, SystemTime::now(), method, path, status, elapsed);
        let writer = writer.get_or_insert_with(|| queue.make_writer());
        // A full queue drops the line and counts it, as for any other line.
        let _ = writer.write_all(line.as_bytes());
    });
}

/// The access line as an ordinary `tracing` event.
fn event(method: &Method, path: &str, status: StatusCode, elapsed: Duration) {
    if JSON.load(Ordering::Relaxed) {
        // Whole microseconds, so the number prints short (0.042, not
        // 0.041999999999999996).
        let elapsed_ms = elapsed.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: "wasi_serve::access",
            %method,
            path,
            status = status.as_u16(),
            elapsed_ms,
        );
        return;
    }
    tracing::info!(
        target: "wasi_serve::access",
        %method,
        path,
        status = status.as_u16(),
        ?elapsed,
    );
}

/// Appends the access line to `line`, as `tracing`'s default formatter
/// writes [`event`].
fn format_line(
    line: &mut String,
    now: SystemTime,
    method: &Method,
    path: &str,
    status: StatusCode,
    elapsed: Duration,
) {
    let _ = writeln!(
        line,
        "{}  INFO wasi_serve::access: method={method} path={path:?} status={} elapsed={elapsed:?}",
        humantime::format_rfc3339_micros(now),
        status.as_u16(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a `tracing` subscriber writes, kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line formatted here is the one the log's own formatter writes
    /// for the same request, up to the clock: same fields, same quoting
    /// and escaping, same layout; and its timestamp is RFC 3339 in UTC
    /// with microseconds, as the formatter's is.
    #[test]
    fn the_line_is_the_one_tracing_writes() {
        let cases = [
            (
                Method::GET,
                "/World",
                StatusCode::OK,
                Duration::from_micros(41),
            ),
            (
                Method::POST,
                "/a\"b\\c/caf\u{e9}/\u{7}",
                StatusCode::PAYLOAD_TOO_LARGE,
                Duration::from_nanos(1_234_567_891),
            ),
            (
                Method::from_bytes(b"PURGE").unwrap(),
                "/",
                StatusCode::GATEWAY_TIMEOUT,
                Duration::from_secs(30),
            ),
        ];
        for (method, path, status, elapsed) in cases {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                event(&method, path, status, elapsed);
            });
            let theirs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            let mut ours = String::new();
            format_line(&mut ours, SystemTime::now(), &method, path, status, elapsed);

            let (their_time, their_rest) = theirs.split_once(' ').unwrap();
            let (our_time, our_rest) = ours.split_once(' ').unwrap();
            assert_eq!(our_rest, their_rest);
            assert_eq!(
                our_time.len(),
                their_time.len(),
                "{our_time} / {their_time}"
            );
            for time in [our_time, their_time] {
                assert!(time.ends_with('Z'), "{time}");
                humantime::parse_rfc3339(time).unwrap();
            }
        }
    }
}
