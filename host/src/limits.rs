//! The limits that keep one guest or one client from taking the host down:
//! their settings, admission of requests into instance slots, and the memory
//! limiter every store carries.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::client_limit::{ClientLimit, ClientTurn, OverLimit};
use crate::metrics::Held;
use crate::units::{parse_duration, parse_size};

/// hyper refuses a smaller read buffer than this for HTTP/1.
pub const MIN_HEADER_SIZE: u64 = 8 * 1024;

/// The largest `--max-header-size` accepted (hyper buffers twice that per
/// connection).
pub const MAX_HEADER_SIZE: u64 = 1 << 20;

/// Most resources (handles) one guest may hold in the host at once; each
/// costs host memory outside the guest's linear memory.
pub const MAX_GUEST_RESOURCES: usize = 10_000;

/// Largest header field a guest may build, in bytes.
pub const MAX_GUEST_FIELD_SIZE: usize = 64 * 1024;

/// The limits in force: each declared here once, as a command-line option
/// (flattened into [`Config`](crate::config::Config)) whose parser checks
/// its range, so a value out of range is a usage error (exit 2) naming the
/// flag. Where each is enforced:
///
/// | limit | enforced in |
/// | --- | --- |
/// | `--request-timeout` | `proxy.rs`: the guest's run under `tokio::time::timeout`, interrupted by epoch |
/// | `--max-memory` | [`MemoryLimiter`] (every store), and the pool's memory size (`runtime.rs`) |
/// | `--max-concurrent-requests` | [`Admission`], and the pool's instance count (`runtime.rs`) |
/// | `--queue-timeout` | [`Admission::admit`] |
/// | `--max-requests-per-client` | [`Admission::admit`], counted in `client_limit.rs` |
/// | `--max-request-body` | `proxy.rs` (declared length) and `body.rs` (counted while read) |
/// | `--max-header-size` | `server.rs`: hyper's buffers, and the 431 check |
/// | `--header-read-timeout` | `server.rs`: hyper's HTTP/1 header timeout, the protocol sniff and the TLS handshake |
/// | `--max-connections` | `connections.rs`, in the accept loop (`server.rs`) |
/// | `--send-timeout` | `send_timeout.rs`: around each HTTP/2 stream's task; each HTTP/1 connection's in `server.rs` |
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Longest a request may take, from its arrival to the guest's last byte;
    /// past it a guest is interrupted (even in an endless loop) and the
    /// client gets 504.
    #[arg(
        long,
        env = "WASI_SERVE_REQUEST_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
    )]
    pub request_timeout: Duration,

    /// Most linear memory one instance may grow to (e.g. `128MiB`); a guest
    /// that needs more fails alone with a 500.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_MEMORY",
        default_value = "128MiB",
        value_parser = parse_memory,
    )]
    pub max_memory: usize,

    /// Most requests served at once; each holds one instance. As many again
    /// may wait up to `--queue-timeout` for a slot, then get 503; past that
    /// queue, 503 at once.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub max_concurrent_requests: u32,

    /// How long a request may wait for a free slot before it gets 503.
    #[arg(
        long,
        env = "WASI_SERVE_QUEUE_TIMEOUT",
        default_value = "1s",
        value_parser = parse_duration,
    )]
    pub queue_timeout: Duration,

    /// Most requests one client address may have in flight at once (an
    /// IPv6 client is its /64), over all its connections. As many again may
    /// wait up to `--queue-timeout` for one of them to finish, then get 429;
    /// past that, 429 at once. Off by default: behind a proxy or load
    /// balancer every request comes from its address, so set this only
    /// where clients connect directly.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_REQUESTS_PER_CLIENT",
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub max_requests_per_client: Option<u32>,

    /// Largest request body accepted (e.g. `10MiB`); larger ones get 413.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_REQUEST_BODY",
        default_value = "10MiB",
        value_parser = parse_size,
    )]
    pub max_request_body: u64,

    /// Largest request head (request line and headers) accepted, 8KiB to
    /// 1MiB; larger ones get 431.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_HEADER_SIZE",
        default_value = "64KiB",
        value_parser = parse_header_size,
    )]
    pub max_header_size: u64,

    /// How long a client may take to send a request's headers (and to start
    /// talking after connecting); slower connections are closed.
    #[arg(
        long,
        env = "WASI_SERVE_HEADER_READ_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
    )]
    pub header_read_timeout: Duration,

    /// Most client connections open at once; past it, new connections wait
    /// in the listen backlog until one closes. Each holds buffers
    /// (kilobytes; tens of kilobytes with TLS) for as long as it is open.
    #[arg(
        long,
        env = "WASI_SERVE_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
    )]
    pub max_connections: u32,

    /// How long a client may leave a response's body untaken: if it takes
    /// no part of it for this long, the response is cut off (HTTP/2: its
    /// stream is reset; HTTP/1: the connection is closed, after at most
    /// twice this) and its instance freed. A guest that is slow to write is bounded by
    /// `--request-timeout` instead.
    #[arg(
        long,
        env = "WASI_SERVE_SEND_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
    )]
    pub send_timeout: Duration,
}

/// `--max-header-size`: a size from 8KiB (hyper's smallest HTTP/1 buffer)
/// to 1MiB (hyper buffers twice that per connection).
fn parse_header_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size < MIN_HEADER_SIZE {
        return Err("must be at least 8KiB".into());
    }
    if size > MAX_HEADER_SIZE {
        return Err("cannot exceed 1MiB".into());
    }
    Ok(size)
}

/// `--max-memory`: a size from 64KiB, one WebAssembly page (the least a
/// guest with a memory has), up to 4GiB, the most a 32-bit memory can hold.
fn parse_memory(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    if size < 64 << 10 {
        return Err("must be at least 64KiB, one WebAssembly page".into());
    }
    if size > 4 << 30 {
        return Err("cannot exceed 4GiB, the most a 32-bit memory can hold".into());
    }
    usize::try_from(size).map_err(|_| "too large for this machine".into())
}

/// Admission into the instance slots: one permit per instance, a bounded
/// number of waiters, each waiting a bounded time, and, when set, a bounded
/// number of both per client.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    queue_timeout: Duration,
    clients: Option<ClientLimit>,
    /// `wasi_serve_requests_waiting`.
    queued: Gauge,
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refused {
    /// No slot came free in time, or too many requests were already waiting.
    Busy,
    /// Its client already has `--max-requests-per-client`.
    Client(OverLimit),
}

/// One instance slot, held (and its client's request counted) until dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientTurn>,
}

/// [`Waiting`]'s refusal.
struct Busy;

impl Admission {
    /// Admission for `limits.max_concurrent_requests` instances; as many
    /// requests again may wait, counted in `queued`.
    pub fn new(limits: &Limits, queued: &Gauge) -> Self {
        let slots = limits.max_concurrent_requests as usize;
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: slots,
            queue_timeout: limits.queue_timeout,
            clients: limits
                .max_requests_per_client
                .map(|max| ClientLimit::new(max, queued)),
            queued: queued.clone(),
        }
    }

    /// A slot for one instance, for a request from `client`. Its client's
    /// turn comes first, so that a client at its limit takes no place in the
    /// queue for slots; both waits together last `--queue-timeout` at most.
    pub async fn admit(&self, client: IpAddr) -> Result<Slot, Refused> {
        let mut deadline = Deadline::after(self.queue_timeout);
        // Boxed: every request's future would otherwise carry room for this
        // wait (a timer among it), set or not, and be the larger to move.
        let turn = match &self.clients {
            Some(limit) => Some(
                Box::pin(limit.enter(client, &mut deadline))
                    .await
                    .map_err(Refused::Client)?,
            ),
            None => None,
        };
        let slot = |permit| Slot {
            _permit: permit,
            _client: turn,
        };
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(slot(permit));
        }
        // Counted while waiting; the guard uncounts it however the wait
        // ends, including the client going away and its future being dropped.
        let _waiting =
            Waiting::enter(&self.waiting, self.max_waiting).map_err(|Busy| Refused::Busy)?;
        let _queued = Held::new(&self.queued);
        let permit =
            tokio::time::timeout_at(deadline.at(), self.slots.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => Ok(slot(permit)),
            _ => Err(Refused::Busy),
        }
    }
}

/// When a request's waits for admission must end: a timeout from its first
/// wait, so that a request admitted at once never reads the clock.
pub struct Deadline {
    timeout: Duration,
    at: Option<Instant>,
}

impl Deadline {
    /// `timeout` after the first call to [`Deadline::at`].
    pub fn after(timeout: Duration) -> Self {
        Self { timeout, at: None }
    }

    /// The deadline, fixed at its first call.
    pub fn at(&mut self) -> Instant {
        *self.at.get_or_insert_with(|| Instant::now() + self.timeout)
    }
}

/// One request in the wait queue, for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, max: usize) -> Result<Self, Busy> {
        if count.fetch_add(1, Ordering::Relaxed) >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy);
        }
        Ok(Self(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Caps an instance's linear memory, and remembers if the guest hit the cap
/// so its failure can be reported as what it is.
pub struct MemoryLimiter {
    max: usize,
    /// Set when a `memory.grow` past `max` was refused.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max` bytes of linear memory per memory.
    pub fn new(max: usize) -> Self {
        Self { max, hit: false }
    }

    /// The cap, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max && maximum.is_none_or(|maximum| desired <= maximum);
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|maximum| desired <= maximum))
    }
}
