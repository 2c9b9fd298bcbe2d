use serde::{Deserialize, Serialize};

/// What a node holds, or how much of it is taken.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeResources {
    /// Sandboxes (services' instances and databases' servers included).
    pub sandboxes: u64,
    /// Memory limits, summed.
    pub memory_bytes: u64,
    /// CPU quotas in cores, summed.
    pub cpu: f64,
}

/// Whether a node takes new work.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// It serves and takes new sandboxes, databases and services.
    Ready,
    /// It serves what it holds and takes nothing new.
    Draining,
    /// It has not reported for longer than the cluster's threshold.
    Down,
}

/// A node of the cluster, `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// The node's id (`node_id` of what it holds).
    pub id: String,
    /// Where the gateways reach its API, `host:port`.
    pub address: String,
    /// Whether it takes new work.
    pub status: NodeStatus,
    /// What it holds at most.
    pub capacity: NodeResources,
    /// What is taken.
    pub used: NodeResources,
    /// Its last report, RFC 3339 UTC.
    pub last_seen_at: String,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// Every node that ever joined, by id.
    pub nodes: Vec<NodeInfo>,
}
