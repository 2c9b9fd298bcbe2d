//! Start-up recovery: sandboxes outlive the node. A new node reattaches to every sandbox
//! whose agent still runs, and destroys what is half-created, dead, or unknown to the store
//! (directories and cgroups left by a crash).

use std::collections::HashSet;

use ai2in_store::Status;

use crate::node::Node;

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
            if alive {
                // The freezer state is the truth a crash may have left half-changed.
                let paused = record.status == Status::Paused;
                if let Err(e) = self.runtime().set_paused(&record.id, paused) {
                    tracing::warn!(sandbox = %record.id, error = %e, "could not restore the pause state");
                }
                known.insert(record.id);
                reattached += 1;
            } else if let Err(e) = self.destroy(&record.id, "dead after restart").await {
                tracing::error!(sandbox = %record.id, error = %e, "could not clean up");
            } else {
                cleaned += 1;
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
}
