//! Databases: what each is (engine, version, name, credentials), where it is reached (its
//! port), and the service and volume that run and hold it.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// A database as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRecord {
    /// `db_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// `postgres`, `mysql` or `redis`.
    pub engine: String,
    /// The server's version.
    pub version: String,
    /// The database's name inside the server.
    pub name: String,
    /// The user its url logs in as.
    pub username: String,
    /// That user's password (the store is readable by root only).
    pub password: String,
    /// The node's port for it.
    pub port: u16,
    /// The service running its server.
    pub service_id: String,
    /// The volume holding its data.
    pub volume_id: String,
    /// Memory of its server.
    pub memory_bytes: u64,
    /// Size of its volume.
    pub disk_bytes: u64,
    /// Creation, ms since the epoch.
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, tenant, engine, version, name, username, password, port, service_id, \
                       volume_id, memory_bytes, disk_bytes, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<DatabaseRecord> {
    Ok(DatabaseRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        engine: r.get(2)?,
        version: r.get(3)?,
        name: r.get(4)?,
        username: r.get(5)?,
        password: r.get(6)?,
        port: r.get(7)?,
        service_id: r.get(8)?,
        volume_id: r.get(9)?,
        memory_bytes: r.get::<_, i64>(10)? as u64,
        disk_bytes: r.get::<_, i64>(11)? as u64,
        created_at_ms: r.get(12)?,
    })
}

impl Store {
    /// Records a new database; `false` when its port is taken.
    pub fn insert_database(&self, d: &DatabaseRecord) -> Result<bool, StoreError> {
        let added = self.conn().execute(
            &format!(
                "INSERT INTO databases ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING"
            ),
            params![
                d.id,
                d.tenant,
                d.engine,
                d.version,
                d.name,
                d.username,
                d.password,
                d.port,
                d.service_id,
                d.volume_id,
                d.memory_bytes as i64,
                d.disk_bytes as i64,
                d.created_at_ms
            ],
        )?;
        Ok(added == 1)
    }

    /// Database `id` of `tenant` (of any tenant for `None`).
    pub fn database(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<Option<DatabaseRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM databases WHERE id = ?2 AND (?1 IS NULL OR tenant = ?1)"
            ))?
            .query_row(params![tenant, id], from_row)
            .optional()?)
    }

    /// The databases of `tenant`, or of every tenant, oldest first.
    pub fn databases(&self, tenant: Option<&str>) -> Result<Vec<DatabaseRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM databases WHERE ?1 IS NULL OR tenant = ?1 \
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![tenant], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets the password of database `id`.
    pub fn set_database_password(&self, id: &str, password: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE databases SET password = ?2 WHERE id = ?1",
            params![id, password],
        )?;
        Ok(())
    }

    /// Forgets database `id`.
    pub fn delete_database(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM databases WHERE id = ?1", params![id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(id: &str, tenant: &str, port: u16) -> DatabaseRecord {
        DatabaseRecord {
            id: id.into(),
            tenant: tenant.into(),
            engine: "postgres".into(),
            version: "15".into(),
            name: "app".into(),
            username: "u_1".into(),
            password: "secret".into(),
            port,
            service_id: "svc_1".into(),
            volume_id: "vol_1".into(),
            memory_bytes: 1,
            disk_bytes: 2,
            created_at_ms: 3,
        }
    }

    #[test]
    fn ports_are_unique_and_records_round_trip() {
        let s = Store::open(std::path::Path::new(":memory:")).unwrap();
        assert!(s.insert_database(&database("db_1", "a", 21000)).unwrap());
        assert!(!s.insert_database(&database("db_2", "a", 21000)).unwrap());
        assert!(s.insert_database(&database("db_3", "b", 21001)).unwrap());
        assert!(s.database(Some("b"), "db_1").unwrap().is_none());
        s.set_database_password("db_1", "new").unwrap();
        assert_eq!(s.database(None, "db_1").unwrap().unwrap().password, "new");
        assert_eq!(s.databases(Some("a")).unwrap().len(), 1);
        s.delete_database("db_1").unwrap();
        assert_eq!(s.databases(None).unwrap().len(), 1);
    }
}
