//! The node's configuration: flags, then environment variables, then a TOML file, then the
//! embedded defaults.

use std::path::{Path, PathBuf};

use ai2in_node::NodeConfig;
use anyhow::Context;
use serde::Deserialize;

/// Where a node keeps its state by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ai2in";
/// Where a node listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4747";

/// The TOML file: `state_dir`, `listen`, and the node's sections
/// (`[defaults]`, `[limits]`, `[quotas]`, `[capacity]`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub listen: Option<String>,
    #[serde(flatten)]
    pub node: NodeConfig,
}

impl FileConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }
}
