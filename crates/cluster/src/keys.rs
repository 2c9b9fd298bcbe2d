use ai2in_store::KeyRecord;
use tokio_postgres::Row;

use crate::{Cluster, ClusterError, schema};

const COLUMNS: &str = "id, name, tenant, scopes, hash, created_at";

fn key(row: &Row) -> KeyRecord {
    let scopes: &str = row.get(3);
    let hash: &[u8] = row.get(4);
    KeyRecord {
        id: row.get(0),
        name: row.get(1),
        tenant: row.get(2),
        scopes: scopes.split_whitespace().map(String::from).collect(),
        hash: hash.try_into().unwrap_or([0; 32]),
        created_at_ms: row.get(5),
    }
}

/// The cluster's API keys: the same records a single node keeps in SQLite, shared by every
/// gateway.
impl Cluster {
    /// Stores a new key.
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO ai2in_keys (id, name, tenant, scopes, hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &key.id,
                    &key.name,
                    &key.tenant,
                    &key.scopes.join(" "),
                    &&key.hash[..],
                    &key.created_at_ms,
                ],
            )
            .await?;
        Ok(())
    }

    /// The unrevoked key with this hash.
    pub async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, ClusterError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM ai2in_keys WHERE hash = $1 AND revoked_at IS NULL"),
                &[&&hash[..]],
            )
            .await?;
        Ok(row.as_ref().map(key))
    }

    /// Unrevoked keys, of one tenant or of all.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, ClusterError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM ai2in_keys WHERE revoked_at IS NULL \
                     AND ($1::text IS NULL OR tenant = $1) ORDER BY created_at, id"
                ),
                &[&tenant],
            )
            .await?;
        Ok(rows.iter().map(key).collect())
    }

    /// Revokes key `id`; false when there is no such unrevoked key.
    pub async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, ClusterError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE ai2in_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now_ms],
            )
            .await?;
        Ok(n > 0)
    }

    /// Stores `key` when the cluster has never had one (the first gateway's admin key); false
    /// when it has. Two gateways starting at once make one key between them.
    pub async fn insert_first_key(&self, key: &KeyRecord) -> Result<bool, ClusterError> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&schema::LOCK])
            .await?;
        let first = async {
            let count: i64 = client
                .query_one("SELECT count(*) FROM ai2in_keys", &[])
                .await?
                .get(0);
            if count > 0 {
                return Ok(false);
            }
            self.insert_key(key).await.map(|()| true)
        }
        .await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&schema::LOCK])
            .await?;
        first
    }
}
