use serde::{Deserialize, Serialize};

/// `POST /v1/databases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDatabaseRequest {
    /// `postgres`, `mysql` or `redis`: one this node serves (`GET /v1/databases/engines`).
    pub engine: String,
    /// A version the node serves; its default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The database's name inside the server (1 to 63 of `a-z 0-9 _`, starting with a
    /// letter); `app` when absent. Redis ignores it: its database is `0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Memory of the server's sandbox; the engine's caches are sized to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Size of the volume holding its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// Where a database is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    /// Its server is starting for the first time.
    Creating,
    /// It accepts connections.
    Available,
    /// Its server died and is being started again; the data is kept.
    Restarting,
    /// Its server cannot be started (its logs in the node's say why).
    Failed,
}

/// What a database's sandbox may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseResources {
    /// Memory limit of its server.
    pub memory_bytes: u64,
    /// Size of its data volume.
    pub disk_bytes: u64,
}

/// The database object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Database {
    /// `db_…`.
    pub id: String,
    /// `postgres`, `mysql` or `redis`.
    pub engine: String,
    /// The server's version (`15`, `7.0`; MariaDB says so: `mariadb-10.11`).
    pub version: String,
    /// The database's name inside the server.
    pub name: String,
    /// Where it is in its life.
    pub status: DatabaseStatus,
    /// The connection string, password included (`postgres://`, `mysql://`, `redis://`):
    /// the same from the host, other machines and the tenant's sandboxes.
    pub url: String,
    /// The address it is reached at.
    pub host: String,
    /// Its port there, fixed for its life.
    pub port: u16,
    /// The user its url logs in as.
    pub username: String,
    /// That user's password (also in `url`).
    pub password: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Its limits.
    pub resources: DatabaseResources,
}

/// `GET /v1/databases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseList {
    /// The caller's databases, oldest first.
    pub databases: Vec<Database>,
}

/// An engine this node serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineInfo {
    /// `postgres`, `mysql` or `redis`.
    pub engine: String,
    /// The versions it can run.
    pub versions: Vec<String>,
    /// The version a create without one gets.
    pub default: String,
    /// The image its servers run from (`[databases.ENGINE] image`); absent when they run
    /// from the host's packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// `GET /v1/databases/engines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineList {
    /// What this node serves.
    pub engines: Vec<EngineInfo>,
}
