//! The cluster's shared state in PostgreSQL, its single source of truth: the nodes with their
//! capacity and heartbeats, the API keys (hashes only), and where each sandbox, database,
//! service and volume lives. Gateways and nodes both hold a [`Cluster`]; what only one node
//! needs (its sandboxes' uid slots, mounts, images) stays in that node's SQLite.
#![warn(missing_docs)]

mod db;
mod keys;
mod nodes;
mod placements;
mod schema;

use std::time::Duration;

pub use db::Cluster;
pub use nodes::Heartbeat;
pub use placements::{Kind, Placement, Reserved};

/// How often a node reports its capacity and liveness.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node may stay silent before the cluster counts it as down.
pub const DOWN_AFTER: Duration = Duration::from_secs(5);

/// The header in which a gateway proves to a node that it is one (the cluster's secret).
pub const SECRET_HEADER: &str = "x-ai2in-cluster-secret";
/// The header in which a gateway names the caller it authenticated:
/// `<key id> <tenant> <scope>,<scope>…`.
pub const PRINCIPAL_HEADER: &str = "x-ai2in-principal";

/// A failure to reach or use the cluster's database.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// PostgreSQL refused a statement or the connection failed.
    #[error("the cluster's database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The database holds something this version cannot read.
    #[error("the cluster's database: {0}")]
    Schema(String),
}
