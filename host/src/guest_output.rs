//! Where a guest's stdout and stderr go: into the log, one line per line the
//! guest writes (empty ones included), tagged with the request, at most
//! [`OUTPUT_BUDGET`] bytes per request.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of output logged per request (stdout and stderr together); the rest
/// is dropped, with one line saying so.
pub const OUTPUT_BUDGET: usize = 64 * 1024;

/// Longest line logged as is; longer lines are logged in pieces.
const MAX_LINE: usize = 4 * 1024;

/// The request a guest's output belongs to.
#[derive(Clone)]
pub struct RequestTag {
    /// Request method.
    pub method: http::Method,
    /// Request target.
    pub uri: http::Uri,
}

/// One request's stdout and stderr, sharing one budget.
pub fn pair(tag: RequestTag) -> (GuestOutput, GuestOutput) {
    let shared = Arc::new(Mutex::new(Shared {
        tag,
        left: OUTPUT_BUDGET,
        lines: [Vec::new(), Vec::new()],
        continued: [false; 2],
    }));
    let output = |stream| GuestOutput {
        stream,
        shared: shared.clone(),
    };
    (output(STDOUT), output(STDERR))
}

const STDOUT: usize = 0;
const STDERR: usize = 1;
const NAMES: [&str; 2] = ["stdout", "stderr"];

/// What stdout and stderr of one request share.
struct Shared {
    tag: RequestTag,
    /// Bytes that may still be logged.
    left: usize,
    /// The unfinished last line of each stream.
    lines: [Vec<u8>; 2],
    /// Whether that line continues one logged in pieces ([`MAX_LINE`]), so
    /// that the newline ending it is not taken for an empty line.
    continued: [bool; 2],
}

impl Shared {
    fn write(&mut self, stream: usize, bytes: &[u8]) {
        if self.left == 0 {
            return;
        }
        let kept = bytes.len().min(self.left);
        self.left -= kept;
        for &byte in &bytes[..kept] {
            if byte == b'\n' {
                if !(self.continued[stream] && self.lines[stream].is_empty()) {
                    self.emit(stream);
                }
                self.continued[stream] = false;
            } else {
                self.lines[stream].push(byte);
                if self.lines[stream].len() >= MAX_LINE {
                    self.emit(stream);
                    self.continued[stream] = true;
                }
            }
        }
        if self.left == 0 {
            self.emit_unfinished(stream);
            tracing::warn!(
                target: "wasi_serve::guest",
                method = %self.tag.method,
                path = self.tag.uri.path(),
                "guest output past {OUTPUT_BUDGET} bytes dropped"
            );
        }
    }

    /// Logs what is left of an unfinished line, if anything.
    fn emit_unfinished(&mut self, stream: usize) {
        if !self.lines[stream].is_empty() {
            self.emit(stream);
        }
    }

    /// Logs the current line of `stream`, empty or not: a guest's empty
    /// line is a line too.
    fn emit(&mut self, stream: usize) {
        let line = &mut self.lines[stream];
        tracing::info!(
            target: "wasi_serve::guest",
            method = %self.tag.method,
            path = self.tag.uri.path(),
            stream = NAMES[stream],
            "{}",
            String::from_utf8_lossy(line).trim_end_matches('\r')
        );
        line.clear();
    }
}

impl Drop for Shared {
    /// The request is over: log what is left of unfinished lines.
    fn drop(&mut self) {
        self.emit_unfinished(STDOUT);
        self.emit_unfinished(STDERR);
    }
}

/// A guest output stream (stdout or stderr) that writes to the log.
#[derive(Clone)]
pub struct GuestOutput {
    stream: usize,
    shared: Arc<Mutex<Shared>>,
}

impl GuestOutput {
    fn write(&self, bytes: &[u8]) {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .write(self.stream, bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
