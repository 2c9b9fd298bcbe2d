//! The ai2in node: the sandbox registry and its state machine, lifetimes (the reaper),
//! recovery after a restart, API keys with scopes and tenants, quotas and capacity. It
//! speaks typed calls, no HTTP: the server maps its results and [`NodeError`]s to answers.
#![warn(missing_docs)]

mod agent_client;
mod auth;
mod cluster;
mod commands;
mod config;
mod databases;
mod desktop;
mod error;
mod expose;
mod files;
mod ids;
mod images;
mod metrics;
mod node;
mod pool;
mod pty;
mod reaper;
mod recovery;
mod run;
mod sandbox;
mod services;
mod shell;
mod text;
mod time;
mod volumes;

pub use ai2in_protocol::{ByteRange, FILE_CHUNK};
pub use auth::{
    Principal, Scope, administered_tenant, is_key_id, key_info, key_record, new_key, no_key,
    presented_key, principal_of,
};
pub use config::{
    Capacity, DatabasesConfig, Defaults, HostingConfig, ImagesConfig, Limits, NetworkConfig,
    NodeConfig, PoolConfig, Proxy, Quotas,
};
pub use error::NodeError;
pub use expose::{ProxyTarget, Upstream};
pub use files::{FileReader, WatchSubscription};
pub use images::PullProgress;
pub use node::Node;
pub use pty::{PtyAttachment, PtyEvent};
pub use run::{RunEvent, RunStream};
pub use sandbox::ListFilter;
pub use services::LogFollower;
pub use time::now_ms;
