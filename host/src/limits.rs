//! The limits that keep one guest or one client from taking the host down:
//! their settings, admission of requests into instance slots, and the memory
//! limiter every store carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;

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

/// The limits in force, taken from the command line.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Arrival to last byte; past it the guest is interrupted (504).
    pub request_timeout: Duration,
    /// Largest linear memory an instance may have.
    pub max_memory: usize,
    /// Instances alive at once.
    pub max_concurrent_requests: u32,
    /// Longest wait for an instance slot before 503.
    pub queue_timeout: Duration,
    /// Largest request body (413 beyond).
    pub max_request_body: u64,
    /// Largest request head (431 beyond).
    pub max_header_size: u64,
    /// Time allowed to send a request head, or a first byte after connecting.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The limits `config` asks for, checked.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.max_header_size >= MIN_HEADER_SIZE,
            "--max-header-size must be at least 8KiB"
        );
        anyhow::ensure!(
            config.max_header_size <= MAX_HEADER_SIZE,
            "--max-header-size cannot exceed 1MiB"
        );
        anyhow::ensure!(
            config.max_memory <= 4 << 30,
            "--max-memory cannot exceed 4GiB, the most a 32-bit memory can hold"
        );
        Ok(Self {
            request_timeout: config.request_timeout,
            max_memory: config.max_memory as usize,
            max_concurrent_requests: config.max_concurrent_requests,
            queue_timeout: config.queue_timeout,
            max_request_body: config.max_request_body,
            max_header_size: config.max_header_size,
            header_read_timeout: config.header_read_timeout,
        })
    }
}

/// Admission into the instance slots: one permit per instance, a bounded
/// number of waiters, each waiting a bounded time.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    queue_timeout: Duration,
}

/// No slot came free in time, or too many requests were already waiting.
#[derive(Debug)]
pub struct Busy;

impl Admission {
    /// Admission for `limits.max_concurrent_requests` instances; as many
    /// requests again may wait.
    pub fn new(limits: &Limits) -> Self {
        let slots = limits.max_concurrent_requests as usize;
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: slots,
            queue_timeout: limits.queue_timeout,
        }
    }

    /// A slot for one instance, held until the permit is dropped.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // Counted while waiting; the guard uncounts it however the wait
        // ends, including the client going away and its future being dropped.
        let _waiting = Waiting::enter(&self.waiting, self.max_waiting)?;
        let permit =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy),
        }
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
