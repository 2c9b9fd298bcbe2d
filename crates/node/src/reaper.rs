//! Lifetimes, enforced from the store: the reaper destroys every sandbox whose `end_at` has
//! passed (running or paused), notices sandboxes whose agent died, and forgets sandboxes
//! that ended long ago. It runs for the life of the node, and after a restart picks up
//! where the last run left.

use std::time::Duration;

use ai2in_store::Status;

use crate::node::Node;
use crate::time::now_ms;

/// Longest sleep between two looks at the store.
const TICK: Duration = Duration::from_millis(500);
/// How often the agents' liveness is checked.
const LIVENESS_EVERY: u32 = 4;
/// How long an ended sandbox answers 410 before its id is forgotten (404).
const KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;

impl Node {
    /// The reaper loop.
    pub(crate) async fn reap(self) {
        let mut ticks = 0u32;
        loop {
            if let Err(e) = self.reap_once(ticks % LIVENESS_EVERY == 0).await {
                tracing::error!(error = %e, "reaper");
            }
            ticks = ticks.wrapping_add(1);
            let sleep = match self.store().next_end() {
                Ok(Some(end)) => {
                    Duration::from_millis((end - now_ms()).clamp(0, TICK.as_millis() as i64) as u64)
                }
                _ => TICK,
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.reaper_wake().notified() => {}
            }
        }
    }

    async fn reap_once(&self, check_liveness: bool) -> Result<(), crate::NodeError> {
        for id in self.store().expired(now_ms())? {
            self.destroy(&id, "lifetime ended").await?;
        }
        if check_liveness {
            for record in self.store().live_sandboxes(None)? {
                if !matches!(
                    record.status,
                    Status::Pooled | Status::Running | Status::Paused
                ) {
                    continue;
                }
                let alive = match (record.pid, record.pid_start) {
                    (Some(pid), Some(start)) => self.runtime().is_alive(&record.id, pid, start),
                    _ => false,
                };
                if !alive {
                    self.destroy(&record.id, "its agent died").await?;
                }
            }
            self.store().prune_ended(now_ms() - KEEP_ENDED_MS)?;
        }
        Ok(())
    }
}
