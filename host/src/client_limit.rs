//! `--max-requests-per-client`: how many requests one client may have in
//! flight or waiting for a slot at once, so that one client cannot hold every
//! instance slot and turn all the others away with 503.
//!
//! A client is the address its connections come from, counted over all its
//! connections and HTTP/2 streams. Off by default: behind a proxy or a load
//! balancer every request comes from the same address.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The requests each client has in flight or waiting, against one maximum.
#[derive(Clone)]
pub struct ClientLimit {
    max: u32,
    counts: Arc<Mutex<HashMap<Client, u32>>>,
}

/// A client that already has its maximum of requests.
#[derive(Debug)]
pub struct OverLimit {
    /// Who.
    pub client: Client,
    /// The limit it reached.
    pub max: u32,
}

impl ClientLimit {
    /// At most `max` requests per client.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            counts: Arc::default(),
        }
    }

    /// Counts one more request from `addr`, for as long as the turn lives;
    /// refused when its client has `max` already.
    pub fn enter(&self, addr: IpAddr) -> Result<ClientTurn, OverLimit> {
        let client = Client::of(addr);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if *count >= self.max {
            return Err(OverLimit {
                client,
                max: self.max,
            });
        }
        *count += 1;
        Ok(ClientTurn {
            counts: self.counts.clone(),
            client,
        })
    }

    /// Clients with at least one request counted (the table holds no others).
    pub fn clients(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One request of one client, counted until dropped.
#[derive(Debug)]
pub struct ClientTurn {
    counts: Arc<Mutex<HashMap<Client, u32>>>,
    client: Client,
}

impl Drop for ClientTurn {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
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
    }

    #[test]
    fn turns_are_counted_until_dropped() {
        let limit = ClientLimit::new(2);
        let first = limit.enter(ip("192.0.2.1")).unwrap();
        let second = limit.enter(ip("192.0.2.1")).unwrap();
        let refused = limit.enter(ip("::ffff:192.0.2.1")).unwrap_err();
        assert_eq!(refused.client, Client::of(ip("192.0.2.1")));
        assert_eq!(refused.max, 2);
        // Another client is counted on its own.
        let other = limit.enter(ip("192.0.2.2")).unwrap();
        assert_eq!(limit.clients(), 2);
        drop(first);
        let third = limit.enter(ip("192.0.2.1")).unwrap();
        drop((second, third, other));
        // Clients with nothing in flight leave the table.
        assert_eq!(limit.clients(), 0);
    }
}
