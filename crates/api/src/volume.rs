use serde::{Deserialize, Serialize};

/// `POST /v1/volumes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    /// A name unique among the tenant's volumes (1 to 63 of `a-z 0-9 - _ .`, starting with a
    /// letter or digit); the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its size: writing past it fails inside with ENOSPC.
    pub size_bytes: u64,
}

/// The volume object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Volume {
    /// `vol_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its size.
    pub size_bytes: u64,
    /// Bytes its files take, as `df` counts them.
    pub used_bytes: u64,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// The live sandboxes that mount it.
    pub attached_to: Vec<String>,
}

/// `GET /v1/volumes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeList {
    /// The caller's volumes.
    pub volumes: Vec<Volume>,
}

/// A volume mounted in a sandbox: an item of a create's `volumes` and of the sandbox
/// object's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VolumeAttachment {
    /// The volume, by id or name.
    pub volume_id: String,
    /// Where it is mounted inside: an absolute path, not `/` nor under `/proc`, `/dev` or
    /// `/sys`.
    pub path: String,
    /// Whether it is mounted read-only (any number of sandboxes may); a volume is mounted
    /// read-write by one running sandbox at a time.
    #[serde(default)]
    pub read_only: bool,
}

/// `POST /v1/sandboxes/:id/snapshot`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// The reference the image gets (`name:tag`); `localhost/snapshots/{sandbox}:{time}`
    /// when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
}
