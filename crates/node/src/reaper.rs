//! Lifetimes, enforced from the store: the reaper destroys every sandbox whose `end_at` has
//! passed (running or paused), notices sandboxes whose agent died, and forgets sandboxes
//! that ended long ago. It runs for the life of the node, and after a restart picks up
//! where the last run left.

use std::time::{Duration, Instant};

use ai2in_store::Status;

use crate::node::Node;
use crate::time::now_ms;

/// Longest sleep between two looks at the store.
const TICK: Duration = Duration::from_millis(500);
/// How often the agents' liveness is checked (it reads /proc for every sandbox: by time, not
/// at every wake-up, of which each create and delete makes one).
const LIVENESS_EVERY: Duration = Duration::from_secs(2);
/// How long an ended sandbox answers 410 before its id is forgotten (404).
const KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;

impl Node {
    /// The reaper loop.
    pub(crate) async fn reap(self) {
        let mut last_liveness: Option<Instant> = None;
        loop {
            let check_liveness = last_liveness.is_none_or(|at| at.elapsed() >= LIVENESS_EVERY);
            if check_liveness {
                last_liveness = Some(Instant::now());
            }
            if let Err(e) = self.reap_once(check_liveness).await {
                tracing::error!(error = %e, "reaper");
            }
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
