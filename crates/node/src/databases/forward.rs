//! The kernel's share of a database's endpoint: the node's port of the database forwarded
//! (DNAT) to its server's address, kept pointing at the ready instance of its service. The
//! node's listener on the same port serves what the kernel does not forward: the moments
//! between two instances, and endpoints on loopback. Forwarded connections do not pass
//! through the node at all, so they outlive it (a `kill -9` or an upgrade of the node).

use std::net::SocketAddrV4;

use crate::node::Node;

impl Node {
    /// The ready instance of the service owned by database `id` changed: its port follows,
    /// off the caller's thread (changing a rule runs `nft`).
    pub(crate) fn database_moved(&self, id: &str) {
        let record = match self.store().database(None, id) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(database = %id, error = %e, "could not read it to forward its port");
                return;
            }
        };
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.point_port(record.port, &record.service_id));
    }

    /// Forwards database port `port` to the ready instance of service `service`, or to the
    /// node's listener when it has none (or is gone). Changes are applied one at a time and
    /// each applies the service's state at that moment, so the last one wins.
    pub(super) fn point_port(&self, port: u16, service: &str) {
        let Some(network) = self.runtime().network() else {
            return;
        };
        let _one_at_a_time = self.databases().lock_forwards();
        let target = self
            .services()
            .upstream(service)
            .ok()
            .and_then(|(sandbox, inner)| {
                let record = self.store().sandbox(&sandbox).ok()??;
                let link = network.link(record.uid_slot, !record.egress_denied)?;
                Some(SocketAddrV4::new(link.sandbox_addr, inner))
            });
        let done = match target {
            Some(to) => network.forward_port(port, to).map(|_| ()),
            None => network.unforward_port(port),
        };
        if let Err(e) = done {
            tracing::warn!(port, error = %e, "could not change a database port's forwarding (the node's listener serves it)");
        }
    }
}
