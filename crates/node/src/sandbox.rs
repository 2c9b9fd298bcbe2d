//! The sandbox lifecycle: create (validation, quotas, capacity, start), list, get, lifetime,
//! pause and resume, destroy.

use std::collections::BTreeMap;

use ai2in_api::{
    CreateSandboxRequest, Egress, Network, Resources, SandboxInfo, SandboxStatus, VolumeAttachment,
};
use ai2in_runtime::image::sandbox_files;
use ai2in_runtime::{
    CreateError, InitSpec, ROOTFS_BINDS, Resources as RuntimeResources, VOLUME_ERROR,
};
use ai2in_store::{SandboxRecord, Shape, Status};

use crate::auth::{Principal, Scope};
use crate::config::NodeConfig;
use crate::error::{NodeError, error_chain};
use crate::ids;
use crate::images::Content;
use crate::node::Node;
use crate::time::{now_ms, rfc3339};
use crate::volumes::Mount;

/// Filters of `GET /v1/sandboxes`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only sandboxes with this status.
    pub status: Option<SandboxStatus>,
    /// Only sandboxes whose metadata holds all these pairs.
    pub metadata: BTreeMap<String, String>,
}

fn api_status(status: Status) -> SandboxStatus {
    match status {
        Status::Starting => SandboxStatus::Starting,
        // A pooled sandbox is never shown: it has no tenant until claimed.
        Status::Running | Status::Pooled => SandboxStatus::Running,
        Status::Paused => SandboxStatus::Paused,
        Status::Stopping | Status::Ended => SandboxStatus::Stopping,
    }
}

const MAX_MAP_ENTRIES: usize = 128;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 16 * 1024;

/// Checks an env or metadata map; `env` also forbids `=` in names and NUL anywhere.
fn check_map(field: &str, map: &BTreeMap<String, String>, env: bool) -> Result<(), NodeError> {
    if map.len() > MAX_MAP_ENTRIES {
        return Err(NodeError::Invalid(format!(
            "{field} may hold at most {MAX_MAP_ENTRIES} entries"
        )));
    }
    for (k, v) in map {
        let bad_key =
            k.is_empty() || k.len() > MAX_KEY_LEN || (env && (k.contains('=') || k.contains('\0')));
        if bad_key {
            return Err(NodeError::Invalid(format!(
                "{field} has an invalid name {k:?}: names are 1 to {MAX_KEY_LEN} bytes{}",
                if env { " without '=' or NUL" } else { "" }
            )));
        }
        if v.len() > MAX_VALUE_LEN || (env && v.contains('\0')) {
            return Err(NodeError::Invalid(format!(
                "{field}.{k} is too long or holds NUL"
            )));
        }
    }
    Ok(())
}

/// Checks `timeout_ms` against the node's bounds.
pub(crate) fn check_timeout(field: &str, ms: u64, max: u64) -> Result<u64, NodeError> {
    if ms == 0 || ms > max {
        return Err(NodeError::Invalid(format!(
            "{field} must be between 1 and {max} (ms)"
        )));
    }
    Ok(ms)
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, NodeError> {
    if value < min || value > max {
        return Err(NodeError::Invalid(format!(
            "{field} must be between {min} and {max}"
        )));
    }
    Ok(value)
}

/// A create request checked against the node's limits, its defaults filled in.
pub(crate) struct Admitted {
    pub shape: Shape,
    pub timeout_ms: u64,
    pub env: Vec<(String, String)>,
    pub metadata: BTreeMap<String, String>,
    pub volumes: Vec<VolumeAttachment>,
    /// The desktop's screen, for a desktop sandbox.
    pub desktop: Option<ai2in_store::Screen>,
}

/// Checks `req` against `cfg`'s limits, filling in its defaults (also used at start-up on an
/// empty request, so that defaults outside the limits fail there rather than in every create).
pub(crate) fn admit(cfg: &NodeConfig, req: CreateSandboxRequest) -> Result<Admitted, NodeError> {
    let image = req.image.unwrap_or_else(|| cfg.defaults.image.clone());
    if image.is_empty() || image.starts_with("sha256:") {
        return Err(NodeError::Invalid(format!(
            "image {image:?} is not an image name: give host, an img_… id or a reference such \
             as python:3.12-slim"
        )));
    }
    let desktop = crate::desktop::screen(req.desktop)?;
    let timeout_ms = check_timeout(
        "timeout_ms",
        req.timeout_ms.unwrap_or(cfg.defaults.timeout_ms),
        cfg.limits.max_timeout_ms,
    )?;
    let cpu = req.cpu.unwrap_or(cfg.defaults.cpu);
    if !(cpu.is_finite() && cpu >= 0.01 && cpu <= cfg.limits.max_cpu) {
        return Err(NodeError::Invalid(format!(
            "cpu must be between 0.01 and {} (cores)",
            cfg.limits.max_cpu
        )));
    }
    let memory_bytes = check_range(
        "memory_bytes",
        req.memory_bytes.unwrap_or(cfg.defaults.memory_bytes),
        cfg.limits.min_memory_bytes,
        cfg.limits.max_memory_bytes,
    )?;
    let disk_bytes = check_range(
        "disk_bytes",
        req.disk_bytes.unwrap_or(cfg.defaults.disk_bytes),
        cfg.limits.min_disk_bytes,
        cfg.limits.max_disk_bytes,
    )?;
    let mut env = req.env.unwrap_or_default();
    check_map("env", &env, true)?;
    // Every process of a desktop sandbox finds its display.
    if desktop.is_some() {
        env.entry("DISPLAY".into()).or_insert_with(|| ":0".into());
    }
    let metadata = req.metadata.unwrap_or_default();
    check_map("metadata", &metadata, false)?;
    Ok(Admitted {
        shape: Shape {
            image,
            cpu,
            memory_bytes,
            disk_bytes,
            egress_denied: req.network.unwrap_or_default().egress == Egress::Deny,
        },
        timeout_ms,
        env: env.into_iter().collect(),
        metadata,
        volumes: req.volumes.unwrap_or_default(),
        desktop,
    })
}

impl Node {
    fn info(&self, r: &SandboxRecord) -> Result<SandboxInfo, NodeError> {
        Ok(SandboxInfo {
            id: r.id.clone(),
            status: api_status(r.status),
            image: r.image.clone(),
            image_digest: r.image_digest.clone(),
            desktop: r.desktop.is_some(),
            created_at: rfc3339(r.created_at_ms),
            end_at: rfc3339(r.end_at_ms),
            node_id: self.node_id().to_string(),
            metadata: r.metadata.clone(),
            resources: Resources {
                cpu: r.cpu,
                memory_bytes: r.memory_bytes,
                disk_bytes: r.disk_bytes,
            },
            network: Network {
                egress: if r.egress_denied {
                    Egress::Deny
                } else {
                    Egress::Allow
                },
            },
            volumes: self.volumes().of_sandbox(&r.id)?,
        })
    }

    /// The caller's sandbox `id`, live: 404 when unknown or another tenant's, 410 when ended.
    pub(crate) fn live_record(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<SandboxRecord, NodeError> {
        let not_found = || NodeError::NotFound(format!("no sandbox {id}"));
        if !ids::is_valid(id, "sbx") {
            return Err(not_found());
        }
        let record = self.store().sandbox(id)?.ok_or_else(not_found)?;
        if record.tenant != caller.tenant || self.database_server(caller, &record)? {
            return Err(not_found());
        }
        if matches!(record.status, Status::Ended | Status::Stopping) {
            return Err(NodeError::Ended(id.to_string()));
        }
        Ok(record)
    }

    /// Whether `record` runs a database's server, which the database's calls alone reach
    /// (the node acting itself), not the tenant's sandbox routes.
    fn database_server(
        &self,
        caller: &Principal,
        record: &SandboxRecord,
    ) -> Result<bool, NodeError> {
        let Some(service) = &record.owner else {
            return Ok(false);
        };
        if caller.key_id == crate::auth::NODE_KEY {
            return Ok(false);
        }
        Ok(self
            .store()
            .service(&record.tenant, service)?
            .is_some_and(|s| s.owner.is_some()))
    }

    /// The caller's live sandbox `id` for a change of its lifecycle (delete, pause, lifetime):
    /// 409 for an instance of a service, which its supervisor owns.
    fn own_record(&self, caller: &Principal, id: &str) -> Result<SandboxRecord, NodeError> {
        let record = self.live_record(caller, id)?;
        match &record.owner {
            Some(service) => Err(NodeError::Conflict(format!(
                "sandbox {id} runs service {service}; stop, redeploy or delete the service instead"
            ))),
            None => Ok(record),
        }
    }

    /// The caller's running sandbox `id`: also 409 when paused.
    pub(crate) fn running_record(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<SandboxRecord, NodeError> {
        let record = self.live_record(caller, id)?;
        match record.status {
            Status::Paused => Err(NodeError::Paused(id.to_string())),
            Status::Starting => Err(NodeError::NotFound(format!(
                "sandbox {id} is still starting"
            ))),
            _ => Ok(record),
        }
    }

    /// Creates a sandbox and answers once it can run commands.
    pub async fn create_sandbox(
        &self,
        caller: &Principal,
        req: CreateSandboxRequest,
    ) -> Result<SandboxInfo, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.check_taking_work()?;
        let started_at = std::time::Instant::now();
        let Admitted {
            mut shape,
            timeout_ms,
            env,
            metadata,
            volumes,
            desktop,
        } = admit(self.config(), req)?;
        crate::volumes::require_scopes(caller, &volumes)?;
        if let (Some(_), Some(why)) = (desktop, self.desktop_support()) {
            if shape.image == ai2in_runtime::image::HOST_IMAGE {
                return Err(NodeError::Invalid(format!("desktop: {why}")));
            }
        }
        // The image is pulled first when the tenant lacks it; the pool keeps shapes by
        // content, so that any tenant with the same image claims the same sandboxes.
        let content = self.images().resolve(&caller.tenant, &shape.image).await?;
        let name = std::mem::replace(&mut shape.image, content.key().to_string());
        // Pooled sandboxes have no volumes.
        let claimed = if volumes.is_empty() {
            self.claim_pooled(caller, &shape, &name, &env, &metadata, timeout_ms)
                .await?
        } else {
            None
        };
        let record = match claimed {
            Some(record) => record,
            None => {
                let now = now_ms();
                let record = SandboxRecord {
                    id: ids::new_id("sbx"),
                    tenant: caller.tenant.clone(),
                    status: Status::Starting,
                    image: name,
                    image_digest: content.digest.clone(),
                    desktop: None,
                    created_at_ms: now,
                    end_at_ms: now + timeout_ms as i64,
                    ended_at_ms: None,
                    metadata,
                    cpu: shape.cpu,
                    memory_bytes: shape.memory_bytes,
                    disk_bytes: shape.disk_bytes,
                    uid_slot: 0,
                    pid: None,
                    pid_start: None,
                    owner: None,
                    egress_denied: shape.egress_denied,
                };
                match self
                    .start_sandbox(record.clone(), env.clone(), Status::Running, &volumes)
                    .await
                {
                    // Pooled sandboxes hold the room a caller needs: one gives way.
                    Err(NodeError::Capacity(_)) if self.evict_pooled().await? => {
                        self.start_sandbox(record, env, Status::Running, &volumes)
                            .await?
                    }
                    started => started?,
                }
            }
        };
        // A desktop's display starts in the running sandbox (fresh or from the pool).
        let record = match desktop {
            Some(screen) => match self.start_display(&record.id, screen).await {
                Ok(()) => self
                    .store()
                    .sandbox(&record.id)?
                    .ok_or_else(|| NodeError::Internal("sandbox vanished".into()))?,
                Err(e) => {
                    self.destroy(&record.id, "its display did not start")
                        .await?;
                    return Err(e);
                }
            },
            None => record,
        };
        tracing::info!(sandbox = %record.id, tenant = %record.tenant, pid = ?record.pid, "created");
        self.metrics_state().record_create(started_at.elapsed());
        self.replenish_disks();
        self.info(&record)
    }

    /// The shape of a create request that leaves everything to the defaults.
    pub(crate) fn default_shape(&self) -> Shape {
        let d = &self.config().defaults;
        Shape {
            image: d.image.clone(),
            cpu: d.cpu,
            memory_bytes: d.memory_bytes,
            disk_bytes: d.disk_bytes,
            egress_denied: false,
        }
    }

    /// Makes spare disks for the next creates, in the background.
    pub(crate) fn replenish_disks(&self) {
        if let Some(disks) = self.runtime().disks().filter(|_| self.disk_layer()) {
            let disks = disks.clone();
            tokio::task::spawn_blocking(move || disks.replenish());
        }
    }

    /// Admits `record` (quotas, capacity, a uid slot, its volumes), starts it with `env`,
    /// and records it as `status` once it runs.
    pub(crate) async fn start_sandbox(
        &self,
        record: SandboxRecord,
        env: Vec<(String, String)>,
        status: Status,
        volumes: &[VolumeAttachment],
    ) -> Result<SandboxRecord, NodeError> {
        let content = match &record.image_digest {
            Some(digest) => self.images().content(digest)?,
            None => std::sync::Arc::new(Content::host()),
        };
        let (record, mounts) = self.admit(record, volumes)?;
        // The image's environment lies beneath the create's.
        let mut env_all = content.settings.env.clone();
        env_all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        env_all.extend(env);
        // The host image, or a snapshot of a sandbox of it: the host's skeleton lies beneath.
        let host = content.digest.is_none() || content.settings.host;
        let spec = InitSpec {
            id: record.id.clone(),
            sandbox_dir: self.runtime().sandbox_dir(&record.id),
            layers: if host {
                std::iter::once(self.host_image().to_path_buf())
                    .chain(content.layers.iter().cloned())
                    .collect()
            } else {
                content.layers.clone()
            },
            binds: if host {
                ROOTFS_BINDS.iter().map(Into::into).collect()
            } else {
                Vec::new()
            },
            skeleton: host,
            disk_bytes: record.disk_bytes,
            disk: self.disk_layer(),
            volumes: mounts.iter().map(|m| m.runtime()).collect(),
            // A snapshot keeps the accounts its sandbox had.
            files: sandbox_files(&record.id, content.digest.is_none()),
            workdir: content
                .settings
                .workdir
                .clone()
                .unwrap_or_else(|| "/home/user".into()),
            env: env_all,
            work_fds: Vec::new(),
        };
        let resources = RuntimeResources {
            cpu: record.cpu,
            memory_bytes: record.memory_bytes,
            pids: self.config().limits.pids,
            egress: !record.egress_denied,
        };
        let runtime = self.runtime().clone();
        let slot = record.uid_slot;
        let permit = self.start_permit().await;
        let started = tokio::task::spawn_blocking(move || runtime.create(&spec, slot, &resources))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        drop(permit);
        match started {
            Ok(started) => {
                self.store()
                    .set_started(&record.id, started.pid, started.start_time, status)?;
                self.reaper_wake().notify_one();
                self.store()
                    .sandbox(&record.id)?
                    .ok_or_else(|| NodeError::Internal("sandbox vanished".into()))
            }
            Err(e) => {
                self.store()
                    .set_status(&record.id, Status::Ended, now_ms())?;
                if let CreateError::Init(message) = &e {
                    if message.starts_with(VOLUME_ERROR) {
                        return Err(NodeError::Invalid(format!(
                            "{message}: the image has a file or a symlink there; mount the \
                             volume elsewhere"
                        )));
                    }
                }
                let message = error_chain(&e);
                tracing::error!(sandbox = %record.id, error = %message, "create failed");
                Err(NodeError::Internal(format!(
                    "the sandbox could not be started: {message}"
                )))
            }
        }
    }

    /// Checks quotas, capacity and volumes, picks a uid slot and stores the new sandbox with
    /// its volumes, atomically with respect to other creates.
    fn admit(
        &self,
        mut record: SandboxRecord,
        volumes: &[VolumeAttachment],
    ) -> Result<(SandboxRecord, Vec<Mount>), NodeError> {
        let cfg = self.config();
        let _guard = self.admission();
        let mounts =
            self.volumes()
                .check_mounts(&record.tenant, record.owner.as_deref(), volumes)?;
        let node = self.store().usage(None)?;
        if node.sandboxes >= cfg.capacity.sandboxes {
            return Err(NodeError::Capacity(format!(
                "{} sandboxes running; try again later or another node",
                node.sandboxes
            )));
        }
        if node.memory_bytes + record.memory_bytes > cfg.capacity.memory_bytes {
            return Err(NodeError::Capacity(
                "memory reservations exhausted; try a smaller memory_bytes or later".into(),
            ));
        }
        if node.cpu + record.cpu > cfg.capacity.cpu {
            return Err(NodeError::Capacity(
                "CPU reservations exhausted; try a smaller cpu or later".into(),
            ));
        }
        self.check_quota(&record.tenant, record.memory_bytes)?;
        let mut used = self.store().used_uid_slots()?;
        used.extend(self.detaching_slots());
        used.sort_unstable();
        used.dedup();
        record.uid_slot = (0u32..)
            .zip(used.iter().copied().chain(std::iter::once(u32::MAX)))
            .find(|(i, u)| i != u)
            .map_or(0, |(i, _)| i);
        self.store().insert_sandbox(&record)?;
        let rows: Vec<_> = mounts.iter().map(|m| m.record(&record.id)).collect();
        self.store().insert_volume_mounts(&rows)?;
        Ok((record, mounts))
    }

    /// Ok when `tenant` may hold one more sandbox of `memory_bytes` (429 otherwise). Called
    /// under the admission lock.
    pub(crate) fn check_quota(&self, tenant: &str, memory_bytes: u64) -> Result<(), NodeError> {
        let cfg = self.config();
        let usage = self.store().usage(Some(tenant))?;
        if usage.sandboxes >= cfg.quotas.sandboxes {
            return Err(NodeError::Quota(format!(
                "quota exceeded: at most {} concurrent sandboxes per tenant; delete one first",
                cfg.quotas.sandboxes
            )));
        }
        if usage.memory_bytes + memory_bytes > cfg.quotas.memory_bytes {
            return Err(NodeError::Quota(format!(
                "quota exceeded: at most {} bytes of sandbox memory per tenant; delete a sandbox or ask for less",
                cfg.quotas.memory_bytes
            )));
        }
        Ok(())
    }

    /// The caller's live sandboxes matching `filter`.
    pub fn list_sandboxes(
        &self,
        caller: &Principal,
        filter: &ListFilter,
    ) -> Result<Vec<SandboxInfo>, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let mut listed = Vec::new();
        for record in self.store().live_sandboxes(Some(&caller.tenant))? {
            // Services' instances are listed as services.
            if record.status == Status::Stopping || record.owner.is_some() {
                continue;
            }
            let info = self.info(&record)?;
            let wanted = filter.status.is_none_or(|st| info.status == st)
                && filter
                    .metadata
                    .iter()
                    .all(|(k, v)| info.metadata.get(k) == Some(v));
            if wanted {
                listed.push(info);
            }
        }
        Ok(listed)
    }

    /// Sandbox `id` of the caller.
    pub fn get_sandbox(&self, caller: &Principal, id: &str) -> Result<SandboxInfo, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        self.info(&self.live_record(caller, id)?)
    }

    /// Sets the lifetime of sandbox `id` to end `timeout_ms` from now.
    pub async fn set_timeout(
        &self,
        caller: &Principal,
        id: &str,
        timeout_ms: u64,
    ) -> Result<SandboxInfo, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let timeout_ms = check_timeout(
            "timeout_ms",
            timeout_ms,
            self.config().limits.max_timeout_ms,
        )?;
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        self.own_record(caller, id)?;
        self.store().set_end_at(id, now_ms() + timeout_ms as i64)?;
        self.reaper_wake().notify_one();
        self.get_sandbox(caller, id)
    }

    /// Pauses (`true`) or resumes sandbox `id`; idempotent.
    pub async fn set_paused(
        &self,
        caller: &Principal,
        id: &str,
        paused: bool,
    ) -> Result<SandboxInfo, NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let record = self.own_record(caller, id)?;
        let want = if paused {
            Status::Paused
        } else {
            Status::Running
        };
        if record.status != want {
            let runtime = self.runtime().clone();
            let sid = id.to_string();
            tokio::task::spawn_blocking(move || runtime.set_paused(&sid, paused))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .map_err(|e| NodeError::Internal(error_chain(&e)))?;
            self.store().set_status(id, want, now_ms())?;
            self.cut_connections(id);
            tracing::info!(sandbox = %id, paused, "pause state changed");
        }
        self.get_sandbox(caller, id)
    }

    /// Destroys sandbox `id` of the caller.
    pub async fn delete_sandbox(&self, caller: &Principal, id: &str) -> Result<(), NodeError> {
        caller.require(Scope::SandboxesWrite)?;
        self.own_record(caller, id)?;
        self.destroy(id, "deleted").await
    }

    /// Destroys sandbox `id` whatever its state, and records that it ended.
    pub(crate) async fn destroy(&self, id: &str, why: &str) -> Result<(), NodeError> {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let Some(record) = self
            .store()
            .sandbox(id)?
            .filter(|r| r.status != Status::Ended)
        else {
            return Ok(());
        };
        self.store().set_status(id, Status::Stopping, now_ms())?;
        self.cut_connections(id);
        let runtime = self.runtime().clone();
        let sid = id.to_string();
        tokio::task::spawn_blocking(move || runtime.destroy(&sid))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?
            .map_err(|e| NodeError::Internal(error_chain(&e)))?;
        self.detach_link(record.uid_slot);
        self.streams().forget(id);
        self.store().set_status(id, Status::Ended, now_ms())?;
        tracing::info!(sandbox = %id, why, "destroyed");
        self.membership().ended(id);
        Ok(())
    }
}
