//! Volumes: persistent ext4 filesystems in `STATE/volumes/vol_….img`, each a sparse file of
//! its size, mounted into sandboxes by the runtime (never on the host). The store records
//! them per tenant, and which sandbox mounts which: a volume is mounted read-write by one
//! live sandbox at a time and read-only by any number.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ai2in_api::{CreateVolumeRequest, Volume, VolumeAttachment};
use ai2in_runtime::VolumeMount;
use ai2in_runtime::disk::Disks;
use ai2in_store::{Store, VolumeMountRecord, VolumeRecord};

use crate::auth::{Principal, Scope};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::ids;
use crate::node::Node;
use crate::time::{now_ms, rfc3339};

/// Most volumes one sandbox mounts.
const MAX_MOUNTS: usize = 16;
/// Longest volume name.
const MAX_NAME: usize = 63;
/// Where no volume may be mounted: the kernel's and the node's own mounts.
const RESERVED: &[&str] = &["/proc", "/dev", "/sys"];

/// A volume a create asked for, checked: what the store records and the runtime mounts.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub volume_id: String,
    pub path: String,
    pub read_only: bool,
    image: PathBuf,
}

impl Mount {
    /// The runtime's view.
    pub fn runtime(&self) -> VolumeMount {
        VolumeMount {
            image: self.image.clone(),
            path: self.path.clone(),
            read_only: self.read_only,
        }
    }

    /// The store's record of it in `sandbox_id`.
    pub fn record(&self, sandbox_id: &str) -> VolumeMountRecord {
        VolumeMountRecord {
            sandbox_id: sandbox_id.to_string(),
            volume_id: self.volume_id.clone(),
            path: self.path.clone(),
            read_only: self.read_only,
        }
    }
}

/// The node's volumes.
pub(crate) struct Volumes {
    dir: PathBuf,
    store: Arc<Store>,
    /// `None` when this host cannot make disks: volume routes answer 503.
    disks: Option<Arc<Disks>>,
}

impl Volumes {
    /// The volumes in `dir`. What a crash cut short is undone: files no record names (a
    /// create's partial file, a delete's leftover) are removed, and records whose file was
    /// never made are forgotten.
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        disks: Option<Arc<Disks>>,
    ) -> Result<Volumes, NodeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError::Internal(format!("create {}: {e}", dir.display())))?;
        let mut known = HashSet::new();
        for volume in store.volumes(None)? {
            let name = file_name(&volume.id);
            if dir.join(&name).exists() {
                known.insert(name);
            } else {
                // A create a crash cut short: its file was never whole.
                tracing::info!(volume = %volume.id, "forgetting a volume whose file was never made");
                store.delete_volume(&volume.id)?;
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    tracing::info!(file = %name, "removing a volume file no record names");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Volumes {
            dir: dir.to_path_buf(),
            store,
            disks,
        })
    }

    fn disks(&self) -> Result<&Arc<Disks>, NodeError> {
        self.disks.as_ref().ok_or_else(|| {
            NodeError::Unavailable(
                "this node cannot make volumes (it needs loop devices and mkfs.ext4; see the \
                 node's log)"
                    .into(),
            )
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// The tenant's volume `key` (id or name), as `owner` sees it: a database's volume is
    /// only its server's.
    fn record(
        &self,
        tenant: &str,
        owner: Option<&str>,
        key: &str,
    ) -> Result<VolumeRecord, NodeError> {
        self.store
            .volume(tenant, key)?
            .filter(|r| r.owner.is_none() || r.owner.as_deref() == owner)
            .ok_or_else(|| NodeError::NotFound(format!("no volume {key}")))
    }

    /// The volume object of `record`; `used_bytes` is read from its filesystem.
    fn info(&self, record: &VolumeRecord) -> Result<Volume, NodeError> {
        let used_bytes = self
            .disks()
            .and_then(|d| {
                d.volume_used_bytes(&self.path(&record.id))
                    .map_err(|e| NodeError::Internal(format!("read volume {}: {e}", record.id)))
            })
            .unwrap_or_else(|e| {
                tracing::warn!(volume = %record.id, error = %e, "used bytes unknown");
                0
            });
        Ok(Volume {
            id: record.id.clone(),
            name: record.name.clone(),
            size_bytes: record.size_bytes,
            used_bytes,
            created_at: rfc3339(record.created_at_ms),
            attached_to: self
                .store
                .live_mounts_of_volume(&record.id)?
                .into_iter()
                .map(|m| m.sandbox_id)
                .collect(),
        })
    }

    /// Checks what a create asks to mount for `tenant` (a sandbox owned by `owner`, a
    /// service): paths, volumes, and that no live sandbox mounts read-write a volume asked
    /// for read-write. Called under the admission lock, so that two creates cannot both take
    /// a volume.
    pub fn check_mounts(
        &self,
        tenant: &str,
        owner: Option<&str>,
        asked: &[VolumeAttachment],
    ) -> Result<Vec<Mount>, NodeError> {
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        self.disks()?;
        if asked.len() > MAX_MOUNTS {
            return Err(NodeError::Invalid(format!(
                "volumes may hold at most {MAX_MOUNTS} entries"
            )));
        }
        let mut mounts: Vec<Mount> = Vec::with_capacity(asked.len());
        for (i, a) in asked.iter().enumerate() {
            check_path(i, &a.path)?;
            let record = self.record(tenant, owner, &a.volume_id)?;
            if mounts.iter().any(|m| m.path == a.path) {
                return Err(NodeError::Invalid(format!(
                    "volumes[{i}].path {} is given twice; give each volume its own path",
                    a.path
                )));
            }
            if mounts.iter().any(|m| m.volume_id == record.id) {
                return Err(NodeError::Invalid(format!(
                    "volumes[{i}] mounts volume {} a second time; mount it once",
                    record.id
                )));
            }
            if !a.read_only {
                let writer = self
                    .store
                    .live_mounts_of_volume(&record.id)?
                    .into_iter()
                    .find(|m| !m.read_only);
                if let Some(m) = writer {
                    return Err(NodeError::Conflict(format!(
                        "volume {} is mounted read-write by sandbox {}; delete that sandbox \
                         or mount it read_only",
                        record.id, m.sandbox_id
                    )));
                }
            }
            mounts.push(Mount {
                image: self.path(&record.id),
                volume_id: record.id,
                path: a.path.clone(),
                read_only: a.read_only,
            });
        }
        Ok(mounts)
    }

    /// The volumes sandbox `id` mounts, as its object shows them.
    pub fn of_sandbox(&self, id: &str) -> Result<Vec<VolumeAttachment>, NodeError> {
        Ok(self
            .store
            .mounts_of_sandbox(id)?
            .into_iter()
            .map(|m| VolumeAttachment {
                volume_id: m.volume_id,
                path: m.path,
                read_only: m.read_only,
            })
            .collect())
    }
}

fn file_name(id: &str) -> String {
    format!("{id}.img")
}

/// Checks that `caller` may mount what it asks: volumes:read for read-only mounts,
/// volumes:write for read-write ones.
pub(crate) fn require_scopes(
    caller: &Principal,
    asked: &[VolumeAttachment],
) -> Result<(), NodeError> {
    for a in asked {
        caller.require(if a.read_only {
            Scope::VolumesRead
        } else {
            Scope::VolumesWrite
        })?;
    }
    Ok(())
}

/// Checks a volume's mount path: absolute, normalized, not the root, not reserved.
fn check_path(i: usize, path: &str) -> Result<(), NodeError> {
    let bad = |why: &str| {
        Err(NodeError::Invalid(format!(
            "volumes[{i}].path {path:?} {why}"
        )))
    };
    if !path.starts_with('/') || path.len() > 1024 || path.contains('\0') {
        return bad("must be an absolute path of at most 1024 bytes, such as /data");
    }
    if path == "/" {
        return bad("is the root: mount the volume on a directory such as /data");
    }
    if path
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("must be normalized: no empty, . or .. components and no trailing /");
    }
    if RESERVED
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
    {
        return bad("lies under /proc, /dev or /sys, which the sandbox's kernel views own");
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), NodeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NodeError::Invalid(format!(
            "name {name:?} is not a volume name: use 1 to {MAX_NAME} of a-z, 0-9, -, _ and ., \
             starting with a letter or digit"
        )))
    }
}

fn check_size(cfg: &NodeConfig, size: u64) -> Result<(), NodeError> {
    let (min, max) = (cfg.limits.min_volume_bytes, cfg.limits.max_volume_bytes);
    if size < min || size > max {
        return Err(NodeError::Invalid(format!(
            "size_bytes must be between {min} and {max}"
        )));
    }
    Ok(())
}

impl Node {
    /// Creates a volume for the caller.
    pub async fn create_volume(
        &self,
        caller: &Principal,
        req: CreateVolumeRequest,
    ) -> Result<Volume, NodeError> {
        caller.require(Scope::VolumesWrite)?;
        check_size(self.config(), req.size_bytes)?;
        let id = ids::new_id("vol");
        let name = req.name.unwrap_or_else(|| id.clone());
        check_name(&name)?;
        self.volumes().disks()?;
        let record = VolumeRecord {
            id: id.clone(),
            tenant: caller.tenant.clone(),
            name,
            size_bytes: req.size_bytes,
            created_at_ms: now_ms(),
            owner: None,
        };
        {
            // The quota and the name are checked and taken at once.
            let _guard = self.admission();
            let quota = self.config().quotas.volume_bytes;
            if self.store().volume_bytes(&caller.tenant)? + req.size_bytes > quota {
                return Err(NodeError::Quota(format!(
                    "quota exceeded: at most {quota} bytes of volumes per tenant; delete a \
                     volume or ask for less"
                )));
            }
            if !self.store().insert_volume(&record)? {
                return Err(NodeError::Exists(format!(
                    "a volume named {} exists already; pick another name",
                    record.name
                )));
            }
        }
        self.make_volume_file(&record).await?;
        tracing::info!(volume = %id, tenant = %caller.tenant, size = record.size_bytes, "volume created");
        self.blocking(move |node| node.volumes().info(&record))
            .await
    }

    /// Makes the file of recorded volume `record` (the record is forgotten when it fails).
    async fn make_volume_file(&self, record: &VolumeRecord) -> Result<(), NodeError> {
        let disks = self.volumes().disks()?.clone();
        let path = self.volumes().path(&record.id);
        let size = record.size_bytes;
        let made = tokio::task::spawn_blocking(move || disks.create_volume(&path, size))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?;
        if let Err(e) = made {
            self.store().delete_volume(&record.id)?;
            return Err(if e.raw_os_error() == Some(libc::ENOSPC) {
                NodeError::NoSpace("the node's disk is full; delete volumes or images".into())
            } else {
                NodeError::Internal(format!("make volume {}: {e}", record.id))
            });
        }
        Ok(())
    }

    /// Makes volume `id` of `size` for `tenant` that only `owner` (a database's service)
    /// mounts and nobody lists. Its size counts toward the tenant's volume bytes, but the
    /// quota is not checked: the database quota bounds databases.
    pub(crate) async fn create_owned_volume(
        &self,
        id: &str,
        tenant: &str,
        owner: &str,
        size: u64,
    ) -> Result<(), NodeError> {
        let record = VolumeRecord {
            id: id.to_string(),
            tenant: tenant.to_string(),
            name: id.to_string(),
            size_bytes: size,
            created_at_ms: now_ms(),
            owner: Some(owner.to_string()),
        };
        self.store().insert_volume(&record)?;
        self.make_volume_file(&record).await
    }

    /// Deletes volume `id` whoever owns it, once no live sandbox mounts it (a missing one
    /// is fine: a create may have failed before making it).
    pub(crate) fn delete_owned_volume(&self, id: &str) -> Result<(), NodeError> {
        self.store().delete_volume(id)?;
        let path = self.volumes().path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(volume = %id, error = %e, "volume file not removed");
            }
            _ => {}
        }
        Ok(())
    }

    /// The caller's volumes.
    pub async fn list_volumes(&self, caller: &Principal) -> Result<Vec<Volume>, NodeError> {
        caller.require(Scope::VolumesRead)?;
        let tenant = caller.tenant.clone();
        self.blocking(move |node| {
            node.store()
                .volumes(Some(&tenant))?
                .iter()
                .filter(|r| r.owner.is_none())
                .map(|r| node.volumes().info(r))
                .collect()
        })
        .await
    }

    /// The caller's volume `key` (id or name).
    pub async fn get_volume(&self, caller: &Principal, key: &str) -> Result<Volume, NodeError> {
        caller.require(Scope::VolumesRead)?;
        let record = self.volumes().record(&caller.tenant, None, key)?;
        self.blocking(move |node| node.volumes().info(&record))
            .await
    }

    /// Deletes the caller's volume `key` and its file; 409 while a live sandbox mounts it.
    pub async fn delete_volume(&self, caller: &Principal, key: &str) -> Result<(), NodeError> {
        caller.require(Scope::VolumesWrite)?;
        let record = {
            let _guard = self.admission();
            let record = self.volumes().record(&caller.tenant, None, key)?;
            let users: Vec<String> = self
                .store()
                .live_mounts_of_volume(&record.id)?
                .into_iter()
                .map(|m| m.sandbox_id)
                .collect();
            if !users.is_empty() {
                return Err(NodeError::Conflict(format!(
                    "volume {} is mounted by {}; delete those sandboxes first",
                    record.id,
                    users.join(", ")
                )));
            }
            self.store().delete_volume(&record.id)?;
            record
        };
        let path = self.volumes().path(&record.id);
        if let Err(e) = std::fs::remove_file(&path) {
            // The record is gone: the file is removed at the next start.
            tracing::warn!(volume = %record.id, error = %e, "volume file not removed");
        }
        tracing::info!(volume = %record.id, "volume deleted");
        Ok(())
    }

    /// Runs `f` on a blocking thread (it mounts filesystems or waits on the disk).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_absolute_normalized_and_outside_the_kernel_views() {
        for good in [
            "/data",
            "/home/user/work",
            "/mnt/a.b",
            "/procs",
            "/devices/x",
        ] {
            assert!(check_path(0, good).is_ok(), "{good}");
        }
        for bad in [
            "data", "/", "", "/data/", "/a//b", "/a/./b", "/a/../b", "/proc", "/proc/x", "/dev",
            "/sys/fs", "/a\0b",
        ] {
            let e = check_path(2, bad).unwrap_err().to_string();
            assert!(e.starts_with("volumes[2].path"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_are_dns_like() {
        for good in ["work", "a", "x-1_y.z", "0abc"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "Work", "a b", "a/b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
