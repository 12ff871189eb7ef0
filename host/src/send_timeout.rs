//! Responses a client leaves untaken are cut off (`--send-timeout`).
//!
//! hyper pulls a response body only as fast as the client takes it: while an
//! HTTP/2 stream's flow-control window is shut, or an HTTP/1 socket's send
//! buffer is full, the body is not polled at all. So a client that stops
//! reading would hold its response, and the instance still writing it, for
//! as long as it liked; over HTTP/2 one connection holds up to 200 of them.
//!
//! A response body (`idle::Tracked`) keeps a [`Sending`] up to date: whether
//! it waits for the client to take a part, or for the guest to write one,
//! and how many parts were taken. Waiting on the guest is not the client's
//! fault; `--request-timeout` bounds that.
//!
//! - Each HTTP/2 stream's task (spawned through [`Executor`]) runs under a
//!   [`Watched`], which gives the stream a `Sending` of its own (a
//!   task-local) and drops the task's future once the client has taken
//!   nothing for the timeout while the body waits on it: hyper resets the
//!   stream. Its timer is set only while the stream waits on its client.
//! - An HTTP/1 connection sends one response at a time, so its `Sending`
//!   lives in the connection's `Idle`, and the connection's task looks at it
//!   every timeout ([`Sending::stalled`]): a stall is noticed after between
//!   one and two timeouts, and the connection is closed. A task-local and a
//!   wrapper around every poll of the connection cost about 0.4 µs a
//!   request (docs/performance.md); this costs one timer per connection.
//!
//! Either way the body is dropped, and its guest stopped and its instance
//! freed, as for a client that went away.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};

tokio::task_local! {
    /// The response being sent by the task polled now.
    static SENDING: Arc<Sending>;
}

/// No response is being sent.
const IDLE: u8 = 0;
/// The body has a part for the client, or has not been asked for one yet.
const CLIENT: u8 = 1;
/// The body waits for the guest to write.
const GUEST: u8 = 2;

/// The state of the response an HTTP/2 stream's task, or an HTTP/1
/// connection, is sending.
#[derive(Default)]
pub struct Sending {
    phase: AtomicU8,
    /// Parts taken, and responses begun: any change is progress.
    progress: AtomicU64,
}

impl Sending {
    /// The response of the task polled now, if it runs under a [`Watched`].
    pub fn current() -> Option<Arc<Sending>> {
        SENDING.try_with(Arc::clone).ok()
    }

    /// A response head has gone to hyper; its body is the client's to take.
    pub fn begin(&self) {
        self.took();
    }

    /// hyper took a part of the body: the next is up to the client.
    pub fn took(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        self.phase.store(CLIENT, Ordering::Relaxed);
    }

    /// The body waits for the guest.
    pub fn waiting_on_guest(&self) {
        self.phase.store(GUEST, Ordering::Relaxed);
    }

    /// The body is done with (sent, failed or dropped).
    pub fn end(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    /// Resolves once a response has waited on its client with no progress
    /// through one whole look, taken every `timeout`: after between one and
    /// two `timeout`s of stall. For an HTTP/1 connection, which sends one
    /// response at a time: one timer per connection, none per request.
    pub async fn stalled(&self, timeout: Duration) {
        let mut waiting_at = None;
        loop {
            tokio::time::sleep(timeout).await;
            let progress = self.progress.load(Ordering::Relaxed);
            let waiting = self.phase.load(Ordering::Relaxed) == CLIENT;
            if waiting && waiting_at == Some(progress) {
                return;
            }
            waiting_at = waiting.then_some(progress);
        }
    }
}

/// The client took nothing for `--send-timeout`.
#[derive(Debug)]
pub struct Stalled;

pin_project_lite::pin_project! {
    /// A task's future, dropped when the response it sends stalls on its
    /// client.
    pub struct Watched<F> {
        // Boxed: a stream's future is kilobytes, and would otherwise be
        // copied at each step of the wrapping and spawning.
        #[pin]
        inner: TaskLocalFuture<Arc<Sending>, Pin<Box<F>>>,
        sending: Arc<Sending>,
        timeout: Duration,
        // What giving up does, for the log.
        cut: &'static str,
        // While armed: the progress count when the timer was last set.
        seen: u64,
        armed: bool,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Watched<F> {
    /// `future`, given up when its response stalls for `timeout`, which is
    /// logged as `cut` ("its HTTP/2 stream is reset").
    pub fn new(future: F, timeout: Duration, cut: &'static str) -> Self {
        let sending = Arc::new(Sending::default());
        Self {
            inner: SENDING.scope(sending.clone(), Box::pin(future)),
            sending,
            timeout,
            cut,
            seen: 0,
            armed: false,
            timer: None,
        }
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = Result<F::Output, Stalled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.sending.phase.load(Ordering::Relaxed) != CLIENT {
            *this.armed = false;
            return Poll::Pending;
        }
        let progress = this.sending.progress.load(Ordering::Relaxed);
        if !*this.armed || progress != *this.seen {
            *this.armed = true;
            *this.seen = progress;
            let deadline = Instant::now() + *this.timeout;
            match this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => *this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = this.timer.as_mut().expect("set when armed");
        ready!(timer.as_mut().poll(cx));
        tracing::info!(
            "the client took no part of a response for {:?} (--send-timeout); {}",
            this.timeout,
            this.cut
        );
        Poll::Ready(Err(Stalled))
    }
}

/// Spawns hyper's HTTP/2 stream tasks, each under a [`Watched`].
#[derive(Clone, Copy, Debug)]
pub struct Executor {
    pub timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Watched::new(
            future,
            self.timeout,
            "its HTTP/2 stream is reset",
        ));
    }
}
