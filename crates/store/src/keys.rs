use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// An API key as stored: its SHA-256 hash, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `key_…`.
    pub id: String,
    /// Label.
    pub name: String,
    /// Tenant it acts for.
    pub tenant: String,
    /// Scopes, as written in the API.
    pub scopes: Vec<String>,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, name, tenant, scopes, hash, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let scopes: String = row.get(3)?;
    let hash: Vec<u8> = row.get(4)?;
    Ok(KeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        tenant: row.get(2)?,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        hash: hash.try_into().unwrap_or([0; 32]),
        created_at_ms: row.get(5)?,
    })
}

impl Store {
    /// Stores a new key.
    pub fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO keys (id, name, tenant, scopes, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.id, key.name, key.tenant, key.scopes.join(" "), &key.hash[..], key.created_at_ms],
        )?;
        Ok(())
    }

    /// The unrevoked key with this hash.
    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM keys WHERE hash = ?1 AND revoked_at IS NULL");
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .query_row(params![&hash[..]], from_row)
            .optional()?)
    }

    /// Unrevoked keys, of one tenant or of all.
    pub fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM keys WHERE revoked_at IS NULL AND (?1 IS NULL OR tenant = ?1) ORDER BY created_at, id"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![tenant], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes key `id`; false when there is no such unrevoked key.
    pub fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_ms],
        )?;
        Ok(n > 0)
    }

    /// How many keys were ever created (revoked ones included).
    pub fn key_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0))?)
    }
}
