//! Who gets a connection: a node-wide cap, a per-address cap on connections that have not
//! proven anything yet, and room kept for authorized traffic.
//!
//! Every accepted connection holds a [`ConnectionTicket`] until its last use ends (an
//! upgraded WebSocket keeps it). A new connection is *pending* until a request on it
//! passes authentication, then *authorized*. Pending connections may fill only
//! `max_connections - reserved` slots, and one address may hold `per_address` connections
//! that have proven nothing; past the pending room, a new connection is still admitted
//! into the reserved room *on probation*: its first
//! request must carry a valid token, or it is answered `503 server_busy` and closed. So a
//! flood of idle or anonymous connections cannot lock out the owner, and one address cannot
//! take the pending room alone. Authorized connections count only against the node-wide cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use troupe_actors::metrics as metric_names;

/// The caps, validated at start-up (`server.max_connections`,
/// `server.max_connections_per_address`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Every open connection, authorized or not.
    pub(crate) max: usize,
    /// Connections from one address that proved nothing yet (loopback is exempt: every
    /// local client shares it, and the pending room still bounds it).
    pub(crate) per_address: usize,
}

impl ConnectionLimits {
    /// The room only authorized connections (or probation connections proving a token) may
    /// take: a quarter of the cap.
    fn reserved(self) -> usize {
        self.max / 4
    }

    fn pending_room(self) -> usize {
        self.max - self.reserved()
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overload {
    /// The node-wide cap is reached.
    Node,
    /// This address has its share of pending connections.
    Address,
}

impl Overload {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Address => "address",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    pending: usize,
    pending_by_address: HashMap<IpAddr, usize>,
}

/// The shared counters.
#[derive(Debug)]
pub(crate) struct ConnectionGate {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

/// Where one connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Pending,
    /// Admitted into the reserved room: its requests must prove a token.
    Probation,
    Authorized,
}

/// One admitted connection; dropping the last clone frees its slot.
#[derive(Debug)]
pub(crate) struct ConnectionTicket {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
    standing: Mutex<Standing>,
}

impl ConnectionGate {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a connection from `address`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<ConnectionTicket, Overload> {
        let address = address.to_canonical();
        let mut counts = self.counts();
        if counts.open >= self.limits.max {
            return Err(Overload::Node);
        }
        let from_address = counts.pending_by_address.get(&address).copied();
        if !address.is_loopback() && from_address.unwrap_or(0) >= self.limits.per_address {
            return Err(Overload::Address);
        }
        *counts.pending_by_address.entry(address).or_default() += 1;
        let standing = if counts.pending < self.limits.pending_room() {
            counts.pending += 1;
            Standing::Pending
        } else {
            Standing::Probation
        };
        counts.open += 1;
        metrics::gauge!(metric_names::HTTP_CONNECTIONS).set(counts.open as f64);
        Ok(ConnectionTicket {
            gate: Arc::clone(self),
            address,
            standing: Mutex::new(standing),
        })
    }

    /// Takes a connection that has not proven anything out of the address's count (and,
    /// when it was pending, out of the pending room).
    fn release_unproven(counts: &mut Counts, address: IpAddr, standing: Standing) {
        if standing == Standing::Authorized {
            return;
        }
        if standing == Standing::Pending {
            counts.pending -= 1;
        }
        if let Some(count) = counts.pending_by_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                counts.pending_by_address.remove(&address);
            }
        }
    }

    /// Open connections and pending ones.
    #[cfg(test)]
    fn load(&self) -> (usize, usize) {
        let counts = self.counts();
        (counts.open, counts.pending)
    }
}

impl ConnectionTicket {
    fn standing(&self) -> MutexGuard<'_, Standing> {
        self.standing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this connection must prove a token before anything is served on it.
    pub(crate) fn on_probation(&self) -> bool {
        *self.standing() == Standing::Probation
    }

    /// A request on this connection was authenticated: it leaves the pending room.
    pub(crate) fn authorize(&self) {
        let mut standing = self.standing();
        ConnectionGate::release_unproven(&mut self.gate.counts(), self.address, *standing);
        *standing = Standing::Authorized;
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        let standing = *self.standing();
        let mut counts = self.gate.counts();
        ConnectionGate::release_unproven(&mut counts, self.address, standing);
        counts.open -= 1;
        metrics::gauge!(metric_names::HTTP_CONNECTIONS).set(counts.open as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 2));

    fn gate(max: usize, per_address: usize) -> Arc<ConnectionGate> {
        ConnectionGate::new(ConnectionLimits { max, per_address })
    }

    #[test]
    fn one_address_cannot_take_the_pending_room_alone() {
        let gate = gate(100, 3);
        let held: Vec<_> = (0..3).map(|_| gate.admit(ONE).unwrap()).collect();
        assert_eq!(gate.admit(ONE).err(), Some(Overload::Address));
        let other = gate.admit(TWO).unwrap();
        assert!(!other.on_probation());
        drop(held);
        assert!(gate.admit(ONE).is_ok());
    }

    #[test]
    fn a_flood_of_pending_connections_leaves_room_that_only_a_token_may_use() {
        let gate = gate(8, 100);
        let flood: Vec<_> = (0..6).map(|_| gate.admit(ONE).unwrap()).collect();
        assert!(flood.iter().all(|ticket| !ticket.on_probation()));
        let owner = gate.admit(TWO).unwrap();
        assert!(
            owner.on_probation(),
            "the pending room is full: the reserve is probation"
        );
        owner.authorize();
        assert!(!owner.on_probation());
        let last = gate.admit(ONE).unwrap();
        assert!(last.on_probation());
        assert_eq!(gate.admit(TWO).err(), Some(Overload::Node));
        assert_eq!(gate.load(), (8, 6));
    }

    #[test]
    fn authorized_connections_free_the_pending_room_and_every_slot_comes_back() {
        let gate = gate(8, 2);
        let first = gate.admit(ONE).unwrap();
        let second = gate.admit(ONE).unwrap();
        first.authorize();
        first.authorize();
        assert_eq!(gate.load(), (2, 1));
        let third = gate.admit(ONE).unwrap();
        assert!(!third.on_probation());
        drop((first, second, third));
        assert_eq!(gate.load(), (0, 0));
        assert!(gate.counts().pending_by_address.is_empty());
    }

    #[test]
    fn local_clients_share_loopback_and_are_bounded_by_the_pending_room_only() {
        let gate = gate(8, 1);
        let local: Vec<_> = (0..6)
            .map(|_| gate.admit(IpAddr::from([127, 0, 0, 1])).unwrap())
            .collect();
        assert!(local.iter().all(|ticket| !ticket.on_probation()));
        assert!(
            gate.admit(IpAddr::from([127, 0, 0, 1]))
                .unwrap()
                .on_probation()
        );
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_same_address() {
        let gate = gate(100, 1);
        let _held = gate.admit(ONE).unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.1".parse().unwrap();
        assert_eq!(gate.admit(mapped).err(), Some(Overload::Address));
    }
}
