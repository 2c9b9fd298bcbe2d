//! The warm pool: ready sandboxes of the shapes in recent demand (and the default shape),
//! which a create claims instead of starting one. A pooled sandbox belongs to no tenant, so no
//! caller can reach it; the claim gives it a tenant, metadata and lifetime in one store update
//! (so it is never handed out twice) and its environment through the agent (once only), and
//! it never returns to the pool. A background task refills the pool once claims pause. Pooled
//! sandboxes count toward the node's capacity; a graceful stop destroys them (they hold no
//! one's state).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ai2in_protocol::{Event, Request};
use ai2in_store::{SandboxRecord, Shape, Status};
use tokio::sync::Notify;

use crate::auth::Principal;
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;
use crate::time::now_ms;

/// The tenant of pooled sandboxes: no API key can have it (tenants are letters, digits,
/// `-` and `_`).
pub(crate) const POOL_TENANT: &str = "#pool";
/// A shape stays warm this long after the last create that asked for it.
const DEMAND_TTL: Duration = Duration::from_secs(600);
/// Pooled sandboxes are replaced after this long.
const POOLED_LIFETIME_MS: i64 = 86_400_000;
/// How often the pool is looked at without a wake-up.
const TICK: Duration = Duration::from_secs(5);
/// After a claim the refill waits for a pause this long in claims: starting replacements
/// competes for the CPU with the creates of a burst, which the pool is there to make fast.
const REFILL_QUIET: Duration = Duration::from_millis(20);
/// ... but never longer than this after the first claim of a burst.
const REFILL_MAX_DELAY: Duration = Duration::from_millis(250);

/// The pool's state besides the store.
#[derive(Default)]
pub(crate) struct Pool {
    /// Shapes asked for, with when they last were.
    demand: std::sync::Mutex<Vec<(Shape, Instant)>>,
    /// Wakes the refill task.
    wake: Notify,
    /// Set when the node stops: no more refills.
    stopping: AtomicBool,
    /// Held while a refill runs, so that a stop waits for the sandboxes it is starting.
    refilling: tokio::sync::Mutex<()>,
}

impl Node {
    /// Claims a pooled sandbox of `shape` for `caller`, or `None` when there is none (or the
    /// pool is off). Quotas apply as to a create.
    pub(crate) async fn claim_pooled(
        &self,
        caller: &Principal,
        shape: &Shape,
        image: &str,
        env: &[(String, String)],
        metadata: &BTreeMap<String, String>,
        timeout_ms: u64,
    ) -> Result<Option<SandboxRecord>, NodeError> {
        if self.config().pool.size == 0 {
            return Ok(None);
        }
        self.note_demand(shape);
        let claimed = {
            let _guard = self.admission();
            self.check_quota(&caller.tenant, shape.memory_bytes)?;
            let now = now_ms();
            let end = now + timeout_ms as i64;
            let mut claimed = None;
            for id in self.store().pooled(shape)? {
                if self
                    .store()
                    .claim(&id, &caller.tenant, image, metadata, now, end)?
                {
                    claimed = Some(id);
                    break;
                }
            }
            claimed
        };
        self.pool_state().wake.notify_one();
        let Some(id) = claimed else {
            return Ok(None);
        };
        self.reaper_wake().notify_one();
        let request = Request::Claim { env: env.to_vec() };
        let answer = match self.call_agent(caller, &id, &request, &[]).await {
            Ok(mut call) => call.next().await.map(|(event, _)| event),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Event::Done { .. }) => Ok(self.store().sandbox(&id)?),
            other => {
                tracing::warn!(sandbox = %id, answer = ?other, "a pooled sandbox could not be claimed");
                self.destroy(&id, "its claim failed").await?;
                Ok(None)
            }
        }
    }

    fn note_demand(&self, shape: &Shape) {
        let mut demand = self
            .pool_state()
            .demand
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        demand.retain(|(s, at)| s != shape && now.duration_since(*at) < DEMAND_TTL);
        demand.push((shape.clone(), now));
    }

    /// The shapes to keep warm: the default one and those asked for lately.
    fn wanted_shapes(&self) -> Vec<Shape> {
        // A default image other than `host` is pooled once a create has resolved it.
        let mut wanted: Vec<Shape> = Some(self.default_shape())
            .filter(|s| s.image == ai2in_runtime::image::HOST_IMAGE)
            .into_iter()
            .collect();
        let demand = self
            .pool_state()
            .demand
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (shape, at) in demand.iter() {
            if at.elapsed() < DEMAND_TTL && !wanted.contains(shape) {
                wanted.push(shape.clone());
            }
        }
        wanted
    }

    /// Keeps the pool filled, until the node stops.
    pub(crate) async fn run_pool(self) {
        loop {
            {
                let _refilling = self.pool_state().refilling.lock().await;
                if self.pool_stopping() {
                    return;
                }
                if let Err(e) = self.refill().await {
                    tracing::debug!(error = %e, "the pool was not refilled");
                }
            }
            tokio::select! {
                _ = self.pool_state().wake.notified() => self.quiet_claims().await,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Waits until claims pause for [`REFILL_QUIET`], or [`REFILL_MAX_DELAY`] has passed.
    async fn quiet_claims(&self) {
        let deadline = tokio::time::Instant::now() + REFILL_MAX_DELAY;
        loop {
            tokio::select! {
                _ = self.pool_state().wake.notified() => {}
                _ = tokio::time::sleep(REFILL_QUIET) => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Destroys pooled sandboxes of shapes no longer wanted, then starts what each wanted
    /// shape lacks; stops at the node's capacity.
    async fn refill(&self) -> Result<(), NodeError> {
        let size = self.config().pool.size as usize;
        let wanted = self.wanted_shapes();
        let pooled = self.store().pooled_shapes()?;
        for (id, shape) in &pooled {
            if !wanted.contains(shape) {
                self.destroy(id, "its shape is no longer asked for").await?;
            }
        }
        for shape in wanted {
            let have = pooled.iter().filter(|(_, s)| *s == shape).count();
            for _ in have..size {
                if self.pool_stopping() {
                    return Ok(());
                }
                let now = now_ms();
                let record = SandboxRecord {
                    id: ids::new_id("sbx"),
                    tenant: POOL_TENANT.into(),
                    status: Status::Starting,
                    image: shape.image.clone(),
                    image_digest: shape
                        .image
                        .starts_with("sha256:")
                        .then(|| shape.image.clone()),
                    desktop: None,
                    created_at_ms: now,
                    end_at_ms: now + POOLED_LIFETIME_MS,
                    ended_at_ms: None,
                    metadata: BTreeMap::new(),
                    cpu: shape.cpu,
                    memory_bytes: shape.memory_bytes,
                    disk_bytes: shape.disk_bytes,
                    uid_slot: 0,
                    pid: None,
                    pid_start: None,
                    owner: None,
                    egress_denied: shape.egress_denied,
                };
                self.start_sandbox(record, Vec::new(), Status::Pooled, &[])
                    .await?;
            }
        }
        Ok(())
    }

    /// Destroys the oldest pooled sandbox, if any, to make room; true when one was.
    pub(crate) async fn evict_pooled(&self) -> Result<bool, NodeError> {
        match self.store().pooled_shapes()?.into_iter().next() {
            Some((id, _)) => {
                self.destroy(&id, "room for a create").await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn pool_stopping(&self) -> bool {
        self.pool_state().stopping.load(Ordering::Relaxed)
    }

    /// Stops refilling, waits for the sandboxes being started, then destroys every pooled
    /// sandbox (a graceful stop: they hold no one's state).
    pub(crate) async fn drain_pool(&self) {
        self.pool_state().stopping.store(true, Ordering::Relaxed);
        let _no_refill = self.pool_state().refilling.lock().await;
        let pooled = self.store().pooled_shapes().unwrap_or_default();
        for (id, _) in pooled {
            if let Err(e) = self.destroy(&id, "the node is stopping").await {
                tracing::warn!(sandbox = %id, error = %e, "could not destroy a pooled sandbox");
            }
        }
    }
}
