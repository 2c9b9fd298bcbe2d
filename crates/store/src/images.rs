//! Images: per-tenant records (a name for some content) and the content they name, shared
//! by every tenant that has it (its layers, size and run settings).

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// A tenant's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `img_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Normalised reference.
    pub reference: String,
    /// The content it names.
    pub digest: String,
    /// `pull`, `import` or `snapshot`.
    pub source: String,
    /// When the tenant got it, ms since the epoch.
    pub created_at_ms: i64,
    /// When a sandbox last started from it.
    pub last_used_at_ms: i64,
}

/// Content: what an image digest unpacks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRecord {
    /// Manifest digest.
    pub digest: String,
    /// Its layers, bottom first, as JSON (`[{diff_id, size_bytes}]`).
    pub layers: String,
    /// Bytes of its layers.
    pub size_bytes: u64,
    /// How to run it, as JSON.
    pub settings: String,
}

const COLUMNS: &str = "id, tenant, ref, digest, source, created_at, last_used_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        reference: r.get(2)?,
        digest: r.get(3)?,
        source: r.get(4)?,
        created_at_ms: r.get(5)?,
        last_used_at_ms: r.get(6)?,
    })
}

impl Store {
    /// Records content (idempotent).
    pub fn put_content(&self, c: &ContentRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO contents (digest, layers, size_bytes, settings) VALUES (?1, ?2, ?3, ?4)",
            params![c.digest, c.layers, c.size_bytes as i64, c.settings],
        )?;
        Ok(())
    }

    /// Content `digest`.
    pub fn content(&self, digest: &str) -> Result<Option<ContentRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT digest, layers, size_bytes, settings FROM contents WHERE digest = ?1",
            )?
            .query_row(params![digest], |r| {
                Ok(ContentRecord {
                    digest: r.get(0)?,
                    layers: r.get(1)?,
                    size_bytes: r.get::<_, i64>(2)? as u64,
                    settings: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Every content row's digest and layers.
    pub fn contents(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT digest, layers FROM contents")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets content `digest`.
    pub fn delete_content(&self, digest: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM contents WHERE digest = ?1", params![digest])?;
        Ok(())
    }

    /// Digests named by an image record or used by a live sandbox.
    pub fn digests_in_use(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT digest FROM images UNION SELECT image_digest FROM sandboxes \
             WHERE status != 'ended' AND image_digest IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores `image`, replacing the tenant's record of the same reference (which keeps its
    /// id and creation time).
    pub fn put_image(&self, image: &ImageRecord) -> Result<ImageRecord, StoreError> {
        let conn = self.conn();
        conn.execute(
            &format!(
                "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (tenant, ref) DO UPDATE SET digest = excluded.digest, \
                 source = excluded.source, last_used_at = excluded.last_used_at"
            ),
            params![
                image.id,
                image.tenant,
                image.reference,
                image.digest,
                image.source,
                image.created_at_ms,
                image.last_used_at_ms
            ],
        )?;
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM images WHERE tenant = ?1 AND ref = ?2"
            ))?
            .query_row(params![image.tenant, image.reference], from_row)?)
    }

    /// The tenant's image with id or reference `key`.
    pub fn image(&self, tenant: &str, key: &str) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM images WHERE tenant = ?1 AND (id = ?2 OR ref = ?2)"
            ))?
            .query_row(params![tenant, key], from_row)
            .optional()?)
    }

    /// The tenant's images, newest first.
    pub fn images(&self, tenant: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM images WHERE tenant = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map(params![tenant], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every tenant's images, least recently used first.
    pub fn all_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM images ORDER BY last_used_at, id"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notes that a sandbox started from image `id`.
    pub fn touch_image(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE images SET last_used_at = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Deletes image `id`.
    pub fn delete_image(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM images WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Live sandboxes of `tenant` started from content `digest`.
    pub fn sandboxes_using(&self, tenant: &str, digest: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM sandboxes WHERE status != 'ended' AND tenant = ?1 AND image_digest = ?2",
        )?;
        let rows = stmt.query_map(params![tenant, digest], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
