//! One request: admitted into an instance slot, a fresh store and instance of
//! the current component, the guest's handler called under the request
//! timeout (in place, or on its own task once it has to wait), the response
//! handed back on a oneshot. A client that goes away before the response
//! head stops its guest.

use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::StatusCode;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::oneshot;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiBody;

use crate::admin::Readiness;
use crate::body::{self, Flags, GuestBody};
use crate::client_limit::OverLimit;
use crate::config::Config;
use crate::guest_config::GuestConfig;
use crate::guest_output::RequestTag;
use crate::keyvalue;
use crate::limits::{Admission, Limits, Refused};
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::response_head;
use crate::runtime::{self, Guest, Runtime};
use crate::state::{Grants, GuestState};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request got no response from the guest. Turned into an HTTP
/// response, and logged, by the server.
#[derive(Debug)]
pub enum ProxyError {
    /// The request cannot be handed to a guest (e.g. it has no host).
    BadRequest(anyhow::Error),
    /// The request body is larger than `--max-request-body`.
    BodyTooLarge,
    /// The request body broke off (malformed, or cut short by the client),
    /// and the guest failed reading it.
    BodyBroke,
    /// Every instance slot stayed busy for `--queue-timeout`.
    Busy,
    /// The client had `--max-requests-per-client` in flight, and as many
    /// waiting or none finished within `--queue-timeout`.
    ClientOverLimit(OverLimit),
    /// The guest was still running at `--request-timeout`.
    Timeout,
    /// The guest trapped, failed, or returned without answering.
    Guest {
        /// What went wrong, for the log.
        error: anyhow::Error,
        /// Set when the guest task already logged `error`.
        logged: bool,
    },
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyBroke => StatusCode::BAD_REQUEST,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::ClientOverLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Guest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn guest(error: impl Into<anyhow::Error>) -> Self {
        Self::Guest {
            error: error.into(),
            logged: false,
        }
    }
}

/// The serving state shared by all connections: the runtime, the component
/// being served (swapped atomically on reload), and the limits.
pub struct Proxy {
    runtime: Runtime,
    guest: ArcSwap<Guest>,
    /// The component's file, for reloads.
    path: PathBuf,
    /// The limits in force.
    limits: Limits,
    admission: Admission,
    outbound: Outbound,
    /// What guests are granted beyond HTTP.
    grants: Arc<Grants>,
    /// What operators can scrape.
    metrics: Arc<Metrics>,
    /// False once shutdown has begun.
    readiness: Readiness,
}

impl Proxy {
    /// Builds the runtime and loads `config.component`; fails with one line
    /// naming the file and the reason.
    pub fn load(config: &Config) -> anyhow::Result<Arc<Self>> {
        let limits = config.limits.clone();
        let cache = match config.cache_dir() {
            None => None,
            Some(dir) => match runtime::open_cache(&dir) {
                Ok(cache) => Some(cache),
                // The default place may be unusable (a service user's home
                // that does not exist): serving matters more than caching.
                Err(err) if config.cache_dir.is_none() => {
                    tracing::warn!(
                        "compiled code is not cached: {err:#}; \
                         --cache-dir names a writable directory, --no-cache silences this"
                    );
                    None
                }
                Err(err) => return Err(err.context("--cache-dir")),
            },
        };
        let runtime = Runtime::new(&limits, cache)?;
        let guest = runtime.load(&config.component)?;
        for dir in &config.dirs {
            dir.check()?;
        }
        let grants = Arc::new(Grants {
            env: config.env.clone().into(),
            config: GuestConfig::load(&config.guest_config)?,
            dirs: config.dirs.clone().into(),
            keyvalue: keyvalue::Store::open(&config.keyvalue)?,
        });
        let metrics = Arc::new(Metrics::new());
        metrics.serving(&guest.hash, guest.wasi());
        let admission = Admission::new(&limits, metrics.waiting());
        Ok(Arc::new(Self {
            runtime,
            guest: ArcSwap::from_pointee(guest),
            path: config.component.clone(),
            admission,
            outbound: Outbound::new(config.allow_outbound.clone()),
            grants,
            limits,
            metrics,
            readiness: Readiness::default(),
        }))
    }

    /// The component's file, which reloads read again.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the host takes new requests; the server turns it off when
    /// shutdown begins, the admin listener reports it.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// What guests are granted beyond HTTP.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The runtime components are compiled with.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The component new requests get.
    pub fn current(&self) -> Arc<Guest> {
        self.guest.load_full()
    }

    /// Makes `guest` the component new requests get; requests in flight keep
    /// the one they started with. Returns the one replaced.
    pub fn swap(&self, guest: Guest) -> Arc<Guest> {
        let new = Arc::new(guest);
        let old = self.guest.swap(new.clone());
        self.metrics.serving(&new.hash, new.wasi());
        old
    }

    /// The store for one request to `guest`, tagged `tag`: its own state,
    /// the memory limit, and an epoch deadline at which a running guest
    /// yields to the scheduler.
    pub fn new_store(&self, guest: &Guest, tag: RequestTag) -> Store<GuestState> {
        let state = GuestState::new(
            tag,
            self.outbound.clone(),
            self.grants.clone(),
            self.limits.max_memory,
        );
        let mut store = Store::new(guest.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store
    }

    /// Runs `request`, from a client at `client`, through a fresh instance
    /// of the current component, whichever handler ABI it has.
    ///
    /// A guest still running when the response head is returned goes on, on
    /// its own task, to stream the body; its slot is released when it
    /// finishes.
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
        scheme: Scheme,
        client: IpAddr,
    ) -> Result<hyper::Response<WasiBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error> + Into<BoxError>,
    {
        let arrived = Instant::now();
        let max_body = self.limits.max_request_body;
        if request
            .body()
            .size_hint()
            .exact()
            .is_some_and(|length| length > max_body)
        {
            return Err(ProxyError::BodyTooLarge);
        }
        // Guests that went on to tasks of their own (a WASI 0.3 handler
        // streaming its body, say) are often done but not yet polled: the
        // client has its response, and here is its next request. Letting
        // those tasks run first frees their instances before this one takes
        // another, so the instances alive at once stay about as many as the
        // requests in flight, not twice as many (docs/performance.md).
        if self.metrics.guest_tasks() > 0 {
            tokio::task::yield_now().await;
        }
        let slot = self
            .admission
            .admit(client)
            .await
            .map_err(|refused| match refused {
                Refused::Busy => ProxyError::Busy,
                Refused::Client(over) => ProxyError::ClientOverLimit(over),
            })?;

        let method = request.method().clone();
        let tag = RequestTag {
            method: method.clone(),
            uri: request.uri().clone(),
        };
        let guest = self.current();
        let mut store = self.new_store(&guest, tag.clone());
        let answering = tag.clone();
        let flags = Arc::new(Flags::default());
        let request = body::limit_request(request, max_body, &flags);
        let (answer, answered) = oneshot::channel();
        let call = guest
            .pre
            .prepare(&mut store, request, scheme, answer)
            .map_err(ProxyError::BadRequest)?;

        let deadline = self
            .limits
            .request_timeout
            .saturating_sub(arrived.elapsed());
        let task_flags = flags.clone();
        let metrics = self.metrics.clone();
        let mut guest_run = Box::pin(async move {
            let run = async {
                guest
                    .pre
                    .run(&mut store, call, &metrics)
                    .await
                    .map_err(|err| {
                        // A guest that fails on a body the client broke is
                        // not counted as trapping.
                        if err.is::<Trap>() && !task_flags.body_broke() {
                            metrics.trapped();
                        }
                        anyhow::Error::from(err)
                    })
            };
            let result = match tokio::time::timeout(deadline, run).await {
                Ok(Ok(true)) => Ok(()),
                // A component needing more of some pool resource than the
                // admission limit assumed: no room, not a failure.
                Ok(Ok(false)) => Err(ProxyError::Busy),
                Ok(Err(error)) if store.data().limiter.hit => Err(ProxyError::Guest {
                    error: error.context(format!(
                        "guest exceeded the memory limit of {} bytes",
                        store.data().limiter.max()
                    )),
                    logged: true,
                }),
                Ok(Err(error)) => Err(ProxyError::Guest {
                    error,
                    logged: true,
                }),
                Err(_elapsed) => Err(ProxyError::Timeout),
            };
            if let Err(err) = &result {
                // Before the store (and with it the response body's sender)
                // is dropped: a body cut short must not look complete.
                task_flags.guest_failed();
                match err {
                    ProxyError::Guest { error, .. } if task_flags.body_broke() => tracing::info!(
                        method = %tag.method,
                        path = tag.uri.path(),
                        "request body broke off; the guest failed reading it: {}",
                        one_line(error)
                    ),
                    ProxyError::Guest { error, .. } => tracing::error!(
                        method = %tag.method,
                        path = tag.uri.path(),
                        "guest failed: {}",
                        one_line(error)
                    ),
                    ProxyError::Timeout => {
                        metrics.timed_out();
                        tracing::warn!(
                            method = %tag.method,
                            path = tag.uri.path(),
                            "guest interrupted: still running after {deadline:?}"
                        );
                    }
                    _ => {}
                }
            }
            // The instance goes back to the pool before its slot is handed to
            // a waiting request.
            drop(store);
            drop(slot);
            result
        });
        // Run the guest here first. Most handlers answer and finish without
        // waiting on anything; those cost no task spawn, no timer and no
        // hand-off between tasks. One that waits (a body the client has not
        // sent yet, a timer, a full response channel, an epoch yield) moves
        // to its own task, so it keeps streaming its body after the response
        // head is returned.
        let mut ran = match poll_once(guest_run.as_mut()).await {
            Poll::Ready(result) => GuestRun::Finished(Some(result)),
            Poll::Pending => {
                let counted = self.metrics.guest_task();
                GuestRun::Running(Some(tokio::spawn(async move {
                    let _counted = counted;
                    guest_run.await
                })))
            }
        };

        // Should the client go away now (this future is dropped), `ran` goes
        // with it and stops the guest: nobody is left to answer.
        let answer = match answered.await {
            Ok(Ok(mut response)) => match response_head::check(&method, &mut response) {
                Ok(body) => Ok((response, body)),
                Err(error) => Err(ProxyError::guest(error)),
            },
            Ok(Err(error)) => Err(ProxyError::guest(error)),
            // The guest dropped the response's sender without using it: it
            // trapped, timed out, or returned early. Its run says which.
            Err(_) => Err(match ran.finish().await {
                Ok(()) => {
                    ProxyError::guest(anyhow::anyhow!("guest returned without setting a response"))
                }
                Err(err) => err,
            }),
        };
        // The client has its answer: a guest still running goes on by
        // itself, to stream the body (bounded by the request timeout).
        let writer = ran.writer();
        ran.detach();
        if flags.body_too_large() {
            return Err(ProxyError::BodyTooLarge);
        }
        // A failure the guest's run logged, on a body the client broke.
        if flags.body_broke() && matches!(answer, Err(ProxyError::Guest { logged: true, .. })) {
            return Err(ProxyError::BodyBroke);
        }
        let (response, body) = answer?;
        Ok(match body {
            response_head::Body::Send => {
                let declared = response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|length| length.to_str().ok()?.parse().ok());
                let metrics = self.metrics.clone();
                response.map(|body| {
                    GuestBody::new(body, declared, flags, writer, answering, metrics).boxed_unsync()
                })
            }
            // Whatever the guest writes (it may declare a length it never
            // writes) is not sent.
            response_head::Body::Drop => response.map(|_| {
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }),
        })
    }
}

/// Polls `future` once, without consuming it.
async fn poll_once<F: Future + Unpin>(mut future: F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx))).await
}

/// The guest's run: finished in place, or on its own task. Dropped before
/// [`GuestRun::detach`], it stops the task: the instance and its slot are
/// freed at once instead of at the request timeout.
enum GuestRun {
    Finished(Option<Result<(), ProxyError>>),
    Running(Option<tokio::task::JoinHandle<Result<(), ProxyError>>>),
}

impl GuestRun {
    /// How the run ended (waiting for it if it is still going).
    async fn finish(&mut self) -> Result<(), ProxyError> {
        match self {
            Self::Finished(result) => result.take().unwrap_or(Ok(())),
            Self::Running(None) => Ok(()),
            Self::Running(Some(task)) => match task.await {
                Ok(result) => result,
                Err(join) => Err(ProxyError::guest(
                    anyhow::Error::new(join).context("guest task failed"),
                )),
            },
        }
    }

    /// The task, if the guest still runs on one.
    fn writer(&self) -> Option<tokio::task::AbortHandle> {
        match self {
            Self::Running(Some(task)) => Some(task.abort_handle()),
            _ => None,
        }
    }

    /// Lets a task still running go on by itself.
    fn detach(&mut self) {
        if let Self::Running(task) = self {
            task.take();
        }
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if let Self::Running(Some(task)) = self {
            task.abort();
        }
    }
}

/// `err` and its causes on one line. Trap messages carry a multi-line wasm
/// backtrace; a log line should stay a line.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}
