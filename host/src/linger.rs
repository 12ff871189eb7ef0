//! Answers sent before the request was read to its end (413, 431, 400, 503)
//! still reach a client that is busy sending it.
//!
//! Closing a TCP socket with unread bytes in its receive buffer makes the
//! kernel send RST, and a client that gets RST throws away what it had not
//! yet read: the answer it was meant to see. Hardened servers (nginx's
//! "lingering close") therefore keep reading after such an answer. Here:
//!
//! - [`Lingering`], around every connection's socket: when hyper shuts the
//!   connection down, it half-closes (FIN, after the answer), then reads and
//!   throws away what the client still sends, until the client closes, for at
//!   most [`LINGER_TIME`] and [`LINGER_BYTES`]. A client that closed first
//!   costs one `read` that returns 0.
//! - [`Drained`], around every request body, for HTTP/2, where the
//!   connection stays open: the rest of a body nobody will read is read and
//!   thrown away within the same bounds, so the stream ends the ordinary way
//!   instead of with `RST_STREAM` while the client is still uploading (curl
//!   7.88 loses the answer then).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::idle::Idle;

/// How long, at most, a connection or stream keeps reading after its answer.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// How many bytes, at most, it reads and throws away meanwhile.
pub const LINGER_BYTES: u64 = 16 << 20;

/// A connection's socket, lingering on shutdown (see the module doc), and
/// counting what it writes into its connection's [`Idle`].
pub struct Lingering<S> {
    inner: S,
    /// Set once the write side is shut down.
    linger: Option<Linger>,
    idle: Arc<Idle>,
}

struct Linger {
    deadline: Pin<Box<Sleep>>,
    left: u64,
}

impl<S> Lingering<S> {
    pub fn new(inner: S, idle: Arc<Idle>) -> Self {
        Self {
            inner,
            linger: None,
            idle,
        }
    }

    /// The socket inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.idle.wrote(written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.idle.wrote(written);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                deadline: Box::pin(tokio::time::sleep_until(Instant::now() + LINGER_TIME)),
                left: LINGER_BYTES,
            });
        }
        let Some(linger) = this.linger.as_mut() else {
            unreachable!("set above");
        };
        let mut scratch = [0u8; 8192];
        loop {
            if linger.left == 0 || linger.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    linger.left = linger.left.saturating_sub(buf.filled().len() as u64);
                }
                // The client closed its side (or the socket failed): done.
                Ok(()) | Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// A request body that, dropped unfinished on an HTTP/2 stream, reads the
/// rest and throws it away on a task of its own, within [`LINGER_TIME`] and
/// [`LINGER_BYTES`]: whoever drops it (an early answer, a guest that never
/// reads its body), the stream then ends normally. Bodies of other versions
/// are dropped as they are: their connection closes after an early answer,
/// and [`Lingering`] covers it.
pub struct Drained<B: Body + Unpin + Send + 'static>
where
    B::Data: Send,
{
    /// `None` once dropped.
    body: Option<B>,
    http2: bool,
}

impl<B: Body + Unpin + Send + 'static> Drained<B>
where
    B::Data: Send,
{
    pub fn new(version: http::Version, body: B) -> Self {
        Self {
            body: Some(body),
            http2: version == http::Version::HTTP_2,
        }
    }
}

impl<B: Body + Unpin + Send + 'static> Body for Drained<B>
where
    B::Data: Send,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        match self.get_mut().body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| hyper::body::SizeHint::with_exact(0), B::size_hint)
    }
}

impl<B: Body + Unpin + Send + 'static> Drop for Drained<B>
where
    B::Data: Send,
{
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if !self.http2 || body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut left = LINGER_BYTES;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        left = left.saturating_sub(hyper::body::Buf::remaining(data) as u64);
                    }
                    if left == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        });
    }
}
