//! Volumes: per-tenant records of the node's volume files, and which sandbox mounts which.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// A tenant's volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    /// `vol_…`; also the name of its file.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Unique among the tenant's volumes.
    pub name: String,
    /// Size of its filesystem.
    pub size_bytes: u64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// The database whose data it holds: such a volume is not the tenant's to list, mount or
    /// delete.
    pub owner: Option<String>,
}

/// A volume mounted in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMountRecord {
    /// The sandbox.
    pub sandbox_id: String,
    /// The volume.
    pub volume_id: String,
    /// Where inside.
    pub path: String,
    /// Whether read-only.
    pub read_only: bool,
}

const COLUMNS: &str = "id, tenant, name, size_bytes, created_at, owner";

fn from_row(r: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)? as u64,
        created_at_ms: r.get(4)?,
        owner: r.get(5)?,
    })
}

fn mount_from_row(r: &Row<'_>) -> rusqlite::Result<VolumeMountRecord> {
    Ok(VolumeMountRecord {
        sandbox_id: r.get(0)?,
        volume_id: r.get(1)?,
        path: r.get(2)?,
        read_only: r.get(3)?,
    })
}

impl Store {
    /// Records a new volume; `false` when the tenant already has one of that name.
    pub fn insert_volume(&self, v: &VolumeRecord) -> Result<bool, StoreError> {
        let added = self.conn().execute(
            &format!(
                "INSERT INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
            ),
            params![v.id, v.tenant, v.name, v.size_bytes as i64, v.created_at_ms, v.owner],
        )?;
        Ok(added == 1)
    }

    /// The tenant's volume named by its id or its name.
    pub fn volume(&self, tenant: &str, key: &str) -> Result<Option<VolumeRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM volumes WHERE tenant = ?1 AND (id = ?2 OR name = ?2)"
            ))?
            .query_row(params![tenant, key], from_row)
            .optional()?)
    }

    /// The volumes of `tenant`, or of every tenant, oldest first.
    pub fn volumes(&self, tenant: Option<&str>) -> Result<Vec<VolumeRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![tenant], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bytes of the tenant's volumes, summed.
    pub fn volume_bytes(&self, tenant: &str) -> Result<u64, StoreError> {
        let sum: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM volumes WHERE tenant = ?1",
            params![tenant],
            |r| r.get(0),
        )?;
        Ok(sum as u64)
    }

    /// Forgets volume `id` (its mounts were of ended sandboxes).
    pub fn delete_volume(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM volume_mounts WHERE volume_id = ?1",
            params![id],
        )?;
        conn.execute("DELETE FROM volumes WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Records the volumes sandbox `mounts[..].sandbox_id` mounts.
    pub fn insert_volume_mounts(&self, mounts: &[VolumeMountRecord]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for m in mounts {
            tx.execute(
                "INSERT INTO volume_mounts (sandbox_id, volume_id, path, read_only) VALUES (?1, ?2, ?3, ?4)",
                params![m.sandbox_id, m.volume_id, m.path, m.read_only],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mounts of volume `id` by sandboxes that have not ended.
    pub fn live_mounts_of_volume(&self, id: &str) -> Result<Vec<VolumeMountRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT m.sandbox_id, m.volume_id, m.path, m.read_only FROM volume_mounts m \
             JOIN sandboxes s ON s.id = m.sandbox_id \
             WHERE m.volume_id = ?1 AND s.status != 'ended' ORDER BY s.created_at, s.id",
        )?;
        let rows = stmt.query_map(params![id], mount_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The volumes sandbox `id` mounts, in the order its create named them.
    pub fn mounts_of_sandbox(&self, id: &str) -> Result<Vec<VolumeMountRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sandbox_id, volume_id, path, read_only FROM volume_mounts \
             WHERE sandbox_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![id], mount_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(id: &str, tenant: &str, name: &str) -> VolumeRecord {
        VolumeRecord {
            id: id.into(),
            tenant: tenant.into(),
            name: name.into(),
            size_bytes: 1 << 20,
            created_at_ms: 1,
            owner: None,
        }
    }

    fn store() -> Store {
        Store::open(std::path::Path::new(":memory:")).unwrap()
    }

    #[test]
    fn names_are_unique_per_tenant_and_find_a_volume_like_its_id() {
        let s = store();
        assert!(s.insert_volume(&volume("vol_1", "a", "work")).unwrap());
        assert!(!s.insert_volume(&volume("vol_2", "a", "work")).unwrap());
        assert!(s.insert_volume(&volume("vol_3", "b", "work")).unwrap());
        assert_eq!(s.volume("a", "work").unwrap().unwrap().id, "vol_1");
        assert_eq!(s.volume("a", "vol_1").unwrap().unwrap().name, "work");
        assert!(s.volume("a", "vol_3").unwrap().is_none());
        assert_eq!(s.volume_bytes("a").unwrap(), 1 << 20);
        assert_eq!(s.volumes(None).unwrap().len(), 2);
        s.delete_volume("vol_1").unwrap();
        assert!(s.volume("a", "work").unwrap().is_none());
    }
}
