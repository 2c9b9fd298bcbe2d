//! Persistence of the ai2in node: sandboxes (live and recently ended), API keys, images,
//! volumes, services and databases, in a SQLite file in the state directory, readable by root
//! only. The store is the source of truth for lifetimes, so they hold across node restarts.
//! Of API keys only hashes are stored; services' environments and databases' passwords are
//! stored, since the node must start them again after a host restart.
#![warn(missing_docs)]

mod databases;
mod images;
mod keys;
mod ports;
mod sandboxes;
mod services;
mod volumes;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use databases::DatabaseRecord;
pub use images::{ContentRecord, ImageRecord};
pub use keys::KeyRecord;
pub use sandboxes::{SandboxRecord, Screen, Shape, Status, Usage};
pub use services::{InstanceRecord, LogRecord, ServiceRecord};
pub use volumes::{VolumeMountRecord, VolumeRecord};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (disk full, corruption, I/O).
    #[error("state store failed")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be decoded.
    #[error("state store holds a malformed {0}")]
    Malformed(&'static str),
}

impl StoreError {
    /// Whether the disk under the store is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

/// The node's store. Calls are short and synchronous; never hold one across an `.await`.
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE TABLE IF NOT EXISTS sandboxes (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    status      TEXT NOT NULL,
    image       TEXT NOT NULL,
    desktop     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    end_at      INTEGER NOT NULL,
    ended_at    INTEGER,
    metadata    TEXT NOT NULL,
    cpu         REAL NOT NULL,
    memory_bytes INTEGER NOT NULL,
    disk_bytes  INTEGER NOT NULL,
    uid_slot    INTEGER NOT NULL,
    pid         INTEGER,
    pid_start   INTEGER,
    egress_denied INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS exposed_ports (
    sandbox_id  TEXT NOT NULL,
    port        INTEGER NOT NULL,
    PRIMARY KEY (sandbox_id, port)
);
CREATE TABLE IF NOT EXISTS contents (
    digest      TEXT PRIMARY KEY,
    layers      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    settings    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    ref         TEXT NOT NULL,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    UNIQUE (tenant, ref)
);
CREATE TABLE IF NOT EXISTS volumes (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS volume_mounts (
    sandbox_id  TEXT NOT NULL,
    volume_id   TEXT NOT NULL,
    path        TEXT NOT NULL,
    read_only   INTEGER NOT NULL,
    PRIMARY KEY (sandbox_id, path)
);
CREATE TABLE IF NOT EXISTS services (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    image_digest TEXT,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    deployed_at INTEGER,
    restarts    INTEGER NOT NULL,
    exit_code   INTEGER,
    exit_signal INTEGER,
    exit_at     INTEGER,
    next_restart_at INTEGER,
    instance    TEXT,
    UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS service_instances (
    sandbox_id  TEXT PRIMARY KEY,
    service_id  TEXT NOT NULL,
    command_id  TEXT NOT NULL,
    stdout_offset INTEGER NOT NULL,
    stderr_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS databases (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    engine      TEXT NOT NULL,
    version     TEXT NOT NULL,
    name        TEXT NOT NULL,
    username    TEXT NOT NULL,
    password    TEXT NOT NULL,
    port        INTEGER NOT NULL UNIQUE,
    service_id  TEXT NOT NULL,
    volume_id   TEXT NOT NULL,
    memory_bytes INTEGER NOT NULL,
    disk_bytes  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_logs (
    service_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    line        TEXT NOT NULL,
    PRIMARY KEY (service_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS volume_mounts_volume ON volume_mounts (volume_id);
CREATE INDEX IF NOT EXISTS sandboxes_live ON sandboxes (status, end_at);
CREATE INDEX IF NOT EXISTS sandboxes_tenant ON sandboxes (tenant, status);
";

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Stores of earlier versions lack later columns.
        for (table, column, definition) in [
            ("sandboxes", "egress_denied", "INTEGER NOT NULL DEFAULT 0"),
            ("sandboxes", "image_digest", "TEXT"),
            ("sandboxes", "owner", "TEXT"),
            ("sandboxes", "screen", "TEXT"),
            ("volumes", "owner", "TEXT"),
            ("services", "owner", "TEXT"),
        ] {
            if conn
                .prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
                .is_err()
            {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent: keep using it.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}
