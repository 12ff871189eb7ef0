//! Bodies between the client and the guest, for both handler ABIs: the
//! request body under `--max-request-body`, and the guest's response body as
//! the client gets it (cut off when the guest fails, empty writes dropped).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::AbortHandle;
use wasmtime_wasi_http::WasiBody;

use crate::guest_output::RequestTag;
use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the request path, the guest's run and the response body tell each
/// other about one request.
#[derive(Default)]
pub struct Flags {
    /// The request body went past `--max-request-body`.
    body_too_large: AtomicBool,
    /// The client's request body broke off: malformed, cut short, reset.
    body_broke: AtomicBool,
    /// The guest failed or was interrupted.
    guest_failed: AtomicBool,
}

impl Flags {
    /// Whether the guest read past `--max-request-body`.
    pub fn body_too_large(&self) -> bool {
        self.body_too_large.load(Ordering::Relaxed)
    }

    /// Whether the client's request body broke off (malformed, or cut short
    /// by the client): a guest that then fails is not at fault.
    pub fn body_broke(&self) -> bool {
        self.body_broke.load(Ordering::Relaxed)
    }

    /// Marks the guest as failed: a response body it was still sending ends
    /// in an error. Must happen before the guest's store is dropped, which
    /// ends its body as if complete.
    pub fn guest_failed(&self) {
        self.guest_failed.store(true, Ordering::Relaxed);
    }
}

/// The request with its body as the guest reads it: a body of declared
/// length was checked against `max` before (hyper holds it to that length);
/// one of unknown length is counted as it is read, and past `max` the guest
/// gets a read error and `flags` records it (the client gets 413). A body
/// that breaks off is recorded in `flags` too.
pub fn limit_request<B>(
    request: hyper::Request<B>,
    max: u64,
    flags: &Arc<Flags>,
) -> hyper::Request<WasiBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error> + Into<BoxError>,
{
    let flags = flags.clone();
    if request.body().size_hint().exact().is_some() {
        return request.map(|body| {
            body.map_err(move |err| {
                flags.body_broke.store(true, Ordering::Relaxed);
                err.into()
            })
            .boxed_unsync()
        });
    }
    request.map(|body| {
        Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
            .map_err(move |err| {
                if err.is::<LengthLimitError>() {
                    flags.body_too_large.store(true, Ordering::Relaxed);
                    return wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max));
                }
                flags.body_broke.store(true, Ordering::Relaxed);
                match err.downcast::<hyper::Error>() {
                    Ok(err) => wasmtime_wasi_http::Error::Hyper(*err),
                    Err(err) => wasmtime_wasi_http::Error::InternalError(Some(err.to_string())),
                }
            })
            .boxed_unsync()
    })
}

/// Empty data frames [`GuestBody`] skips in one poll before it yields.
const MAX_EMPTY_FRAMES_PER_POLL: usize = 64;

/// The guest's response body, as the client gets it:
///
/// - wasi:http ends a body cleanly when the guest's store goes away, even if
///   the guest trapped halfway through writing it; this turns that end into
///   an error, so hyper cuts the response off instead of presenting a
///   truncated body as complete.
/// - Empty writes are dropped here. Each would become an HTTP/2 DATA frame
///   that needs no flow-control window, so hyper queues them without limit
///   while a client is not reading: a guest writing nothing in a loop grew
///   the host by gigabytes (GHSA-f8mm-ggr3-89wh; docs/security.md).
/// - Data is handed to hyper at most [`PIECE`] bytes at a time, so that
///   `--send-timeout` sees a slow client's progress: hyper asks for the
///   next part only once the one before has mostly gone out, and a guest
///   may write a MiB in one go.
/// - A body that does not reach its end (the guest failed, or the client
///   went away or took nothing for `--send-timeout`) is logged, with what
///   was sent, and counted: the access line, written with the head, says
///   only how the response began. Its guest, if still writing, is stopped.
pub struct GuestBody {
    inner: WasiBody,
    flags: Arc<Flags>,
    /// The rest of a frame handed out in pieces.
    rest: Bytes,
    /// The guest's task while it may still write the body.
    writer: Option<AbortHandle>,
    /// Bytes handed to hyper.
    sent: u64,
    /// The length the head declares: HTTP/1 stops asking once it is sent.
    declared: Option<u64>,
    /// Whether the body reached its end.
    whole: bool,
    request: RequestTag,
    metrics: Arc<Metrics>,
}

/// The most data [`GuestBody`] hands to hyper at once: one HTTP/2 frame.
const PIECE: usize = 16 * 1024;

impl GuestBody {
    /// `inner`, the answer to `request` of length `declared` (if its head
    /// says), watched through `flags`, written by the task `writer`.
    pub fn new(
        inner: WasiBody,
        declared: Option<u64>,
        flags: Arc<Flags>,
        writer: Option<AbortHandle>,
        request: RequestTag,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            flags,
            rest: Bytes::new(),
            writer,
            sent: 0,
            declared,
            whole: false,
            request,
            metrics,
        }
    }

    /// The next piece of `data`, keeping what is left for the next poll.
    fn piece(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > PIECE {
            self.rest = data.split_off(PIECE);
        }
        self.sent += data.len() as u64;
        if self.rest.is_empty() && self.declared == Some(self.sent) {
            self.whole = true;
        }
        Frame::data(data)
    }

    /// Whether the body was sent whole, or needed nothing more sent: hyper
    /// drops without asking a body that says it has ended (an empty one),
    /// and an HTTP/1 one once its declared length is sent.
    fn complete(&self) -> bool {
        self.whole
            || self.rest.is_empty()
                && (self.declared == Some(self.sent)
                    || self.inner.is_end_stream()
                        && !self.flags.guest_failed.load(Ordering::Relaxed))
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        if self.complete() {
            return;
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        self.metrics.response_cut();
        tracing::info!(
            method = %self.request.method,
            path = self.request.uri.path(),
            sent = self.sent,
            "response cut off after {} bytes of its body",
            self.sent
        );
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            return Poll::Ready(Some(Ok(self.piece(rest))));
        }
        for _ in 0..MAX_EMPTY_FRAMES_PER_POLL {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => return Poll::Ready(Some(Ok(self.piece(data)))),
                    Err(trailers) => {
                        // Trailers end a body.
                        self.whole = true;
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                },
                Poll::Ready(None) if self.flags.guest_failed.load(Ordering::Relaxed) => {
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                        "the guest failed while sending the body".into(),
                    )))));
                }
                Poll::Ready(None) => {
                    self.whole = true;
                    return Poll::Ready(None);
                }
                failed @ Poll::Ready(Some(Err(_))) => return failed,
                Poll::Pending => return Poll::Pending,
            }
        }
        // A guest writing nothing as fast as it can: let others run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        // The upper bound first: a lower one above it panics.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}
