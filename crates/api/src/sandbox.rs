use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    /// Image to start from; the node's default (`host`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A graphical desktop: `true` (1280×800, 96 dpi) or `{ width, height, dpi }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<crate::DesktopRequest>,
    /// Environment variables of every process in the sandbox. Never echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Lifetime in milliseconds; the node's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    pub timeout_ms: Option<u64>,
    /// Free-form labels, usable as list filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// CPU quota in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory limit in bytes (no swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Size limit of the writable layer in bytes (a disk of its own; it does not count
    /// against memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Network settings: `{ egress: "allow" | "deny" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::Network>,
    /// Volumes to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<crate::VolumeAttachment>>,
}

/// Where a sandbox is in its life, as the API reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    /// Being created.
    Starting,
    /// Ready to run code.
    Running,
    /// Frozen; every in-sandbox operation answers 409 until resumed.
    Paused,
    /// Being destroyed.
    Stopping,
}

/// The resources a sandbox may use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    /// CPU quota in cores.
    pub cpu: f64,
    /// Memory limit in bytes.
    pub memory_bytes: u64,
    /// Size limit of the writable layer in bytes.
    pub disk_bytes: u64,
}

/// The sandbox object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxInfo {
    /// `sbx_…`.
    pub id: String,
    /// Current status.
    pub status: SandboxStatus,
    /// Image it was created from, as the create named it.
    pub image: String,
    /// Digest of the image's manifest (`sha256:…`); `null` for the `host` image.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Whether it has a desktop.
    pub desktop: bool,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// When the sandbox is destroyed, RFC 3339 UTC.
    pub end_at: String,
    /// The node it runs on.
    pub node_id: String,
    /// Labels given at creation.
    pub metadata: BTreeMap<String, String>,
    /// Its resource limits.
    pub resources: Resources,
    /// Its network settings.
    #[serde(default)]
    pub network: crate::Network,
    /// Its volumes (`volume_id` is the volume's id).
    #[serde(default)]
    pub volumes: Vec<crate::VolumeAttachment>,
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxList {
    /// The caller's live sandboxes.
    pub sandboxes: Vec<SandboxInfo>,
}

/// `POST /v1/sandboxes/:id/timeout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetTimeoutRequest {
    /// New lifetime from now, in milliseconds (`0 < timeout_ms ≤ 86 400 000`).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    pub timeout_ms: u64,
}
