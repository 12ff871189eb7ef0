//! Connections with nothing to do are closed.
//!
//! hyper closes an idle HTTP/1 keep-alive connection after
//! `--header-read-timeout`, but an HTTP/2 connection whose client answers
//! the server's pings would stay open for good, holding a file descriptor
//! and its buffers, whether it ever sends a request or not. So every
//! connection counts the requests it has open, from the moment hyper hands
//! one over until its response body is sent or dropped; once none has been
//! open for the timeout, the connection is closed gracefully (HTTP/2:
//! GOAWAY, which lets a stream that races it finish).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::send_timeout::Sending;

/// One connection's open requests, and when the last one ended.
pub struct Idle {
    /// When the connection began.
    base: Instant,
    /// Requests handed over and not yet done with.
    open: AtomicUsize,
    /// When a request last ended, in milliseconds after `base`.
    last_done: AtomicU64,
    /// Bytes written to the connection's socket.
    written: AtomicU64,
    /// The response an HTTP/1 connection is sending (it sends one at a
    /// time); HTTP/2 streams have one each (see `send_timeout`).
    sending: Sending,
}

impl Idle {
    /// A connection beginning now, with no request yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            open: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            written: AtomicU64::new(0),
            sending: Sending::default(),
        })
    }

    /// The response the connection is sending, when it is not an HTTP/2
    /// stream's.
    pub fn sending(&self) -> &Sending {
        &self.sending
    }

    /// `bytes` more were written to the socket.
    pub fn wrote(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has been written to the socket, and no request
    /// has been open, for `timeout`: after a graceful close, what is left is
    /// bytes the client does not take.
    pub async fn stalled(&self, timeout: Duration) {
        loop {
            let before = self.written.load(Ordering::Relaxed);
            tokio::time::sleep(timeout).await;
            self.elapsed(timeout).await;
            if self.written.load(Ordering::Relaxed) == before {
                return;
            }
        }
    }

    /// A request begins; it is open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    /// How long since the last request ended, or since the connection
    /// began if none has: when a head that then fails began to arrive, at
    /// the earliest.
    pub fn quiet_for(&self) -> Duration {
        let last_done = Duration::from_millis(self.last_done.load(Ordering::Acquire));
        self.base.elapsed().saturating_sub(last_done)
    }

    /// Resolves once no request has been open for `timeout`: `timeout`
    /// after the last one ended, or after the connection began if none
    /// came. While requests are open it looks again every `timeout`.
    pub async fn elapsed(&self, timeout: Duration) {
        let mut deadline = self.base + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.open.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let last_done =
                self.base + Duration::from_millis(self.last_done.load(Ordering::Acquire));
            let idle_until = last_done + timeout;
            if Instant::now() >= idle_until {
                return;
            }
            deadline = idle_until;
        }
    }
}

/// A request that has begun and is not done with: its handling, then its
/// response body.
pub struct Open(Arc<Idle>);

impl Drop for Open {
    fn drop(&mut self) {
        let idle = &self.0;
        let now = Instant::now().saturating_duration_since(idle.base);
        // The time first: whoever sees the count fall sees it too.
        idle.last_done.store(
            u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        idle.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request open until it is sent or dropped,
/// and tells its [`Sending`] (`--send-timeout`) whether it waits on the
/// client or on the guest: its HTTP/2 stream's, or else its connection's.
pub struct Tracked<B> {
    body: B,
    open: Open,
    stream: Option<Arc<Sending>>,
}

impl<B> Tracked<B> {
    /// `body`, keeping `open` for as long as it lives.
    pub fn new(body: B, open: Open) -> Self {
        let tracked = Self {
            body,
            open,
            stream: Sending::current(),
        };
        tracked.sending().begin();
        tracked
    }

    fn sending(&self) -> &Sending {
        self.stream.as_deref().unwrap_or(&self.open.0.sending)
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.sending().end();
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let sending = self.sending();
        match &polled {
            Poll::Pending => sending.waiting_on_guest(),
            Poll::Ready(Some(Ok(_))) => sending.took(),
            Poll::Ready(_) => sending.end(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
