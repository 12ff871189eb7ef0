//! `--max-requests-per-client`: how many requests one client may have in
//! flight at once, so that one client cannot hold every instance slot and
//! turn all the others away with 503. As with the slots themselves, as many
//! again may wait (up to `--queue-timeout`) for one of the client's own
//! requests to finish; past that queue, 429 at once.
//!
//! The wait matters to clients that behave: a guest that goes on to a task
//! of its own (every WASI 0.3 guest) finishes a moment after its client has
//! the whole response, and a client's next request on the same connection
//! often arrives first.
//!
//! A client is the address its connections come from, counted over all its
//! connections and HTTP/2 streams. Off by default: behind a proxy or a load
//! balancer every request comes from the same address.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::Deadline;
use crate::metrics::Held;

/// What a limit counts against: an IPv4 address, or the /64 an IPv6 address
/// lies in (one host is commonly handed a whole /64, and can use any address
/// in it). An IPv4 address mapped into IPv6 counts as itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    /// The client a connection from `addr` belongs to.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !u128::from(u64::MAX),
                ))),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Each client's requests, in flight or waiting, against one maximum.
#[derive(Clone)]
pub struct ClientLimit {
    max: u32,
    clients: Arc<Mutex<HashMap<Client, Entry>>>,
    /// Where waiting requests are counted (`wasi_serve_requests_waiting`).
    queued: Gauge,
}

/// One client with requests in flight or waiting.
#[derive(Debug)]
struct Entry {
    /// `max` permits, one per request in flight.
    in_flight: Arc<Semaphore>,
    /// Its requests in flight and waiting; the entry goes at zero.
    requests: u32,
}

/// A client that has its maximum of requests in flight, and either as many
/// again waiting or none of them finished in time.
#[derive(Debug)]
pub struct OverLimit {
    /// Who.
    pub client: Client,
    /// The limit it reached.
    pub max: u32,
}

impl ClientLimit {
    /// At most `max` requests in flight per client, and `max` waiting,
    /// counted in `queued` while they wait.
    pub fn new(max: u32, queued: &Gauge) -> Self {
        Self {
            max,
            clients: Arc::default(),
            queued: queued.clone(),
        }
    }

    /// Counts one more request from `addr`, for as long as the turn lives.
    /// A client with `max` in flight waits until `deadline` for one to
    /// finish, unless `max` are waiting already.
    pub async fn enter(
        &self,
        addr: IpAddr,
        deadline: &mut Deadline,
    ) -> Result<ClientTurn, OverLimit> {
        let client = Client::of(addr);
        let over = || OverLimit {
            client,
            max: self.max,
        };
        let (counted, in_flight) = {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = clients.entry(client).or_insert_with(|| Entry {
                in_flight: Arc::new(Semaphore::new(self.max as usize)),
                requests: 0,
            });
            if entry.requests >= self.max.saturating_mul(2) {
                return Err(over());
            }
            entry.requests += 1;
            let counted = Counted {
                clients: self.clients.clone(),
                client,
            };
            (counted, entry.in_flight.clone())
        };
        // Dropped on every way out below, `counted` uncounts the request,
        // including when its future is dropped while it waits.
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _queued = Held::new(&self.queued);
                match tokio::time::timeout_at(deadline.at(), in_flight.acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(over()),
                }
            }
        };
        Ok(ClientTurn {
            _permit: permit,
            _counted: counted,
        })
    }

    /// Clients with at least one request counted (the table holds no others).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One request of one client, in flight until dropped.
#[derive(Debug)]
pub struct ClientTurn {
    // Fields drop in order: the permit goes back before the entry that holds
    // its semaphore can go.
    _permit: OwnedSemaphorePermit,
    _counted: Counted,
}

/// One request counted in its client's entry, in flight or waiting.
#[derive(Debug)]
struct Counted {
    clients: Arc<Mutex<HashMap<Client, Entry>>>,
    client: Client,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = clients.get_mut(&self.client) {
            entry.requests -= 1;
            if entry.requests == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_millis(50))
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        assert_eq!(
            Client::of(ip("2001:db8::1")),
            Client::of(ip("2001:db8::ffff"))
        );
        assert_ne!(
            Client::of(ip("2001:db8::1")),
            Client::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(Client::of(ip("2001:db8::7")).to_string(), "2001:db8::/64");
        assert_eq!(
            Client::of(ip("::ffff:192.0.2.9")),
            Client::of(ip("192.0.2.9"))
        );
        assert_ne!(Client::of(ip("192.0.2.9")), Client::of(ip("192.0.2.10")));
        assert_eq!(Client::of(ip("192.0.2.9")).to_string(), "192.0.2.9");
        // Not mapped: the IPv6 loopback stays IPv6.
        assert_eq!(Client::of(ip("::1")).to_string(), "::/64");
    }

    #[tokio::test]
    async fn turns_are_counted_until_dropped() {
        let limit = ClientLimit::new(2, &Gauge::default());
        let first = limit.enter(ip("192.0.2.1"), &mut soon()).await.unwrap();
        let second = limit.enter(ip("192.0.2.1"), &mut soon()).await.unwrap();
        // A third waits for a turn, and gets none in time.
        let refused = limit
            .enter(ip("::ffff:192.0.2.1"), &mut soon())
            .await
            .unwrap_err();
        assert_eq!(refused.client, Client::of(ip("192.0.2.1")));
        assert_eq!(refused.max, 2);
        // Another client is counted on its own.
        let other = limit.enter(ip("192.0.2.2"), &mut soon()).await.unwrap();
        assert_eq!(limit.clients(), 2);
        drop(first);
        let third = limit.enter(ip("192.0.2.1"), &mut soon()).await.unwrap();
        drop((second, third, other));
        // Clients with nothing in flight leave the table, refused and timed
        // out requests included.
        assert_eq!(limit.clients(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_next_turn_and_more_are_refused_at_once() {
        let queued = Gauge::default();
        let limit = ClientLimit::new(1, &queued);
        let far = || Deadline::after(Duration::from_secs(60));
        let first = limit.enter(ip("192.0.2.1"), &mut far()).await.unwrap();
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.enter(ip("192.0.2.1"), &mut far()).await.map(|_| ()) }
        });
        while queued.get() < 1 {
            tokio::task::yield_now().await;
        }
        // One in flight and one waiting: a third is refused without waiting.
        let mut third = far();
        let refused = tokio::time::timeout(
            Duration::from_secs(30),
            limit.enter(ip("192.0.2.1"), &mut third),
        );
        assert!(refused.await.expect("refused at once").is_err());
        drop(first);
        waiting
            .await
            .unwrap()
            .expect("the waiting request got the turn");
        assert_eq!(queued.get(), 0);
        assert_eq!(limit.clients(), 0);
    }
}
