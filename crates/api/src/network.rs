use serde::{Deserialize, Serialize};

/// `POST /v1/sandboxes/:id/expose`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExposeRequest {
    /// The port inside the sandbox (1–65535); it may listen on 127.0.0.1 only.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: u16,
}

/// Answer to `expose`: the public URL that reaches the port through the node's proxy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExposeResponse {
    /// The port inside the sandbox.
    pub port: u16,
    /// `{scheme}://{port}-{id}.{domain}[:{proxy_port}]/`, `{id}` being the sandbox id without
    /// its `sbx_` (the older form with the whole id is served too).
    pub url: String,
}

/// Network settings of a sandbox (extension of the create request and the sandbox object).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Whether the sandbox may open connections to the outside; `allow` by default.
    #[serde(default)]
    pub egress: Egress,
}

/// Whether a sandbox may reach the outside.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Outbound connections leave through NAT.
    #[default]
    Allow,
    /// No outbound connection leaves the sandbox.
    Deny,
}

/// `GET /v1/sandboxes/:id/metrics`: live figures from the kernel's accounting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxMetrics {
    /// When they were read, RFC 3339 UTC.
    pub timestamp: String,
    /// CPUs the sandbox may use (its quota, rounded up).
    pub cpu_count: u32,
    /// CPU used over the last short window, as a percentage of the quota.
    pub cpu_used_pct: f64,
    /// Memory in use (processes, page cache and the writable layer's files).
    pub mem_used_bytes: u64,
    /// Memory limit.
    pub mem_limit_bytes: u64,
    /// Bytes used in the writable layer.
    pub disk_used_bytes: u64,
    /// Size of the writable layer.
    pub disk_limit_bytes: u64,
    /// Tasks (processes and threads).
    pub pids: u64,
    /// Bytes received by the sandbox's network interface.
    pub net_rx_bytes: u64,
    /// Bytes sent by the sandbox's network interface.
    pub net_tx_bytes: u64,
}
