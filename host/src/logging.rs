//! The log on stderr. A line is formatted by the thread that logs it, then
//! queued for a thread of its own, which writes what has queued up in one
//! `write` (so a busy server makes one system call per batch of lines, not
//! one per request), and a request never waits for stderr.
//!
//! The queue holds `--log-queue-lines` lines. When it is full (stderr is a
//! pipe nobody reads, or a disk slower than the requests), new lines are
//! dropped, not waited for, and counted: `wasi_serve_log_lines_dropped_total`
//! on the admin port says how many, so none is lost silently. Lines stderr
//! refuses (a pipe whose reader has gone, a full disk) are counted there too.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How many lines dropped so far, once logging has started.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines stderr refused.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Kept until [`flush`]: dropping it writes what is queued and stops the
/// writer thread.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Sends the process's log (`RUST_LOG`, `info` by default) to stderr through
/// the queue, formatted as `format`.
pub fn init(format: LogFormat, queue_lines: usize) {
    // The writer thread flushes after each batch it takes from the queue.
    let stderr = BufWriter::with_capacity(64 << 10, Stderr(io::stderr()));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue_lines)
        .thread_name("wasi-serve-log")
        .finish(stderr);
    let _ = DROPPED.set(writer.error_counter());
    *WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(guard);
    let logs = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
    match format {
        LogFormat::Text => {
            let colours = colours();
            if !colours {
                crate::access_log::format_here(writer.clone());
            }
            logs.with_ansi(colours).with_writer(writer).init()
        }
        LogFormat::Json => {
            crate::access_log::elapsed_as_number();
            logs.with_writer(writer).json().init()
        }
    }
}

/// Lines dropped because the queue was full or stderr refused them.
pub fn dropped_lines() -> u64 {
    let queue_full = DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64);
    queue_full + REFUSED.load(Ordering::Relaxed)
}

/// Stderr for the writer thread. What stderr refuses is counted and let go,
/// not handed back as an error: the writer thread would keep it buffered and
/// retry it before every later batch, and on an error its loop misses the
/// message that stops it, so the process would wait a second for it at exit.
struct Stderr(io::Stderr);

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(err) if err.kind() != io::ErrorKind::Interrupted => {
                let lines = buf.iter().filter(|&&byte| byte == b'\n').count();
                REFUSED.fetch_add(lines as u64, Ordering::Relaxed);
                Ok(buf.len())
            }
            written => written,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Unbuffered: nothing is held back to flush.
        Ok(())
    }
}

/// Writes out every queued line; call before the process ends, and before
/// writing to stderr directly.
pub fn flush() {
    drop(
        WRITER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(),
    );
}

/// Coloured logs on a terminal, unless `NO_COLOR` is set (no-color.org).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
