//! `--max-connections`: how many client connections are open at once. Each
//! one holds buffers (kilobytes; tens of kilobytes with TLS) for as long as
//! its client keeps it, and the open-files limit is raised at start, so
//! without a cap a client opening connections by the hundred thousand would
//! take the host's memory. Past the cap nothing more is accepted: new
//! connections wait in the listen backlog (or are refused by the kernel when
//! it is full) until one closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Held;

/// How often reaching the cap is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connections open, against `--max-connections`.
pub struct ConnectionLimit {
    max: u32,
    places: Arc<Semaphore>,
    /// `wasi_serve_connections`.
    open: Gauge,
    /// When reaching the cap was last logged.
    warned: Option<Instant>,
}

/// One connection's place, held until dropped.
pub struct Place {
    _permit: OwnedSemaphorePermit,
    _open: Held,
}

impl ConnectionLimit {
    /// At most `max` connections, counted in `open`.
    pub fn new(max: u32, open: &Gauge) -> Self {
        Self {
            max,
            places: Arc::new(Semaphore::new(max as usize)),
            open: open.clone(),
            warned: None,
        }
    }

    /// A place for the next connection, waiting for one to close while
    /// `max` are open.
    pub async fn place(&mut self) -> Place {
        let permit = match self.places.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    self.warned = Some(Instant::now());
                    tracing::warn!(
                        "{} connections open (--max-connections): new ones wait until one closes",
                        self.max
                    );
                }
                self.places
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        Place {
            _permit: permit,
            _open: Held::new(&self.open),
        }
    }
}
