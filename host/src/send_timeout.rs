//! Responses a client leaves untaken are cut off (`--send-timeout`).
//!
//! hyper pulls a response body only as fast as the client takes it: while an
//! HTTP/2 stream's flow-control window is shut, or an HTTP/1 socket's send
//! buffer is full, the body is not polled at all. So a client that stops
//! reading would hold its response, and the instance still writing it, for
//! as long as it liked; over HTTP/2 one connection holds up to 200 of them.
//!
//! Each connection's task, and each HTTP/2 stream's task (spawned through
//! [`Executor`]), runs under a [`Watched`]. The response body polled within
//! it ([`Sending`], kept by `idle::Tracked`) says whether it is waiting for
//! the client to take a part, or for the guest to write one, and counts the
//! parts taken. When the client has taken nothing for the timeout while
//! the body waits on it, the task's future is dropped: hyper resets the
//! HTTP/2 stream (or the HTTP/1 connection closes), the body is dropped, and
//! its guest is stopped and its instance freed as for a client that went
//! away. Waiting on the guest is not the client's fault; `--request-timeout`
//! bounds that. The timer is set only while a task is waiting on its client.

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

/// The state of the response its task is sending.
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
    /// logged as `cut` ("its connection is closed").
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
