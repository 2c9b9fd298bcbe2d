//! Start-up recovery: sandboxes outlive the node. A new node reattaches to every sandbox
//! whose agent still runs, and destroys what is half-created, dead, unknown to the store
//! (directories and cgroups left by a crash), or run by an agent of another protocol version
//! (left by an upgrade: this node could not talk to it).

use std::collections::HashSet;

use std::time::Duration;

use ai2in_protocol::PROTOCOL_VERSION;
use ai2in_store::Status;

use crate::node::Node;

/// How long recovery waits for an agent's answer to a ping.
const AGENT_PING_WAIT: Duration = Duration::from_secs(2);

impl Node {
    pub(crate) async fn recover(&self) {
        let records = match self.store().live_sandboxes(None) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "recovery could not read the store");
                return;
            }
        };
        let (mut reattached, mut cleaned) = (0, 0);
        let mut known = HashSet::new();
        for record in records {
            let alive = matches!(
                record.status,
                Status::Pooled | Status::Running | Status::Paused
            ) && match (record.pid, record.pid_start) {
                (Some(pid), Some(start)) => self.runtime().is_alive(&record.id, pid, start),
                _ => false,
            };
            let unusable = if !alive {
                Some("dead after restart")
            } else if !self.speaks_our_protocol(&record.id, record.status).await {
                Some("its agent speaks another protocol")
            } else {
                None
            };
            match unusable {
                None => {
                    // The freezer state is the truth a crash may have left half-changed.
                    let paused = record.status == Status::Paused;
                    if let Err(e) = self.runtime().set_paused(&record.id, paused) {
                        tracing::warn!(sandbox = %record.id, error = %e, "could not restore the pause state");
                    }
                    known.insert(record.id);
                    reattached += 1;
                }
                Some(why) => match self.destroy(&record.id, why).await {
                    Ok(()) => cleaned += 1,
                    Err(e) => {
                        tracing::error!(sandbox = %record.id, error = %e, "could not clean up")
                    }
                },
            }
        }
        for id in self.runtime().leftovers() {
            if !known.contains(&id) {
                match self.runtime().destroy(&id) {
                    Ok(()) => cleaned += 1,
                    Err(e) => {
                        tracing::error!(sandbox = %id, error = %e, "could not remove leftovers")
                    }
                }
            }
        }
        tracing::info!(reattached, cleaned, "recovery done");
    }

    /// Whether the agent of a live sandbox speaks [`PROTOCOL_VERSION`]. A paused one cannot
    /// answer (it is frozen), nor can a busy one in time: those are given the benefit of the
    /// doubt.
    async fn speaks_our_protocol(&self, id: &str, status: Status) -> bool {
        if status == Status::Paused {
            return true;
        }
        match self.agent_version(id, AGENT_PING_WAIT).await {
            Some(version) if version != PROTOCOL_VERSION => {
                tracing::warn!(
                    sandbox = %id,
                    agent = version,
                    node = PROTOCOL_VERSION,
                    "the sandbox's agent speaks another protocol version; destroying it"
                );
                false
            }
            _ => true,
        }
    }
}
