//! How user commands reach a node: flags, then environment variables, then the user's
//! config file (`$XDG_CONFIG_HOME/ai2in/config.toml`, else `~/.config/ai2in/config.toml`),
//! then, for a node on this machine, the admin key in its state directory.

use std::path::{Path, PathBuf};

use ai2in_client::{Client, DEFAULT_BASE_URL};
use anyhow::Context;
use serde::Deserialize;

use crate::config::DEFAULT_STATE_DIR;

/// Where and as whom to talk to a node; every command that does takes these flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of the node [default: config file, else http://127.0.0.1:4747]
    #[arg(
        long = "base-url",
        visible_alias = "url",
        env = "AI2IN_BASE_URL",
        value_name = "URL"
    )]
    base_url: Option<String>,
    /// API key [default: config file, else a local node's admin key]
    #[arg(
        long,
        env = "AI2IN_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,
    /// State directory of a local node, to find its admin key
    #[arg(long, env = "AI2IN_STATE_DIR", default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    state_dir: PathBuf,
    /// Print JSON (the API's objects) instead of text for people
    #[arg(long)]
    pub json: bool,
}

/// `config.toml` of the user: both keys optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserConfig {
    base_url: Option<String>,
    api_key: Option<String>,
}

/// No key anywhere: said with every place one can be put.
#[derive(Debug, thiserror::Error)]
#[error("no API key: pass --api-key, set AI2IN_API_KEY, or put api_key in {config}{local}")]
pub struct NoApiKey {
    config: String,
    local: String,
}

impl UserConfig {
    fn path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
        Some(base.join("ai2in").join("config.toml"))
    }

    /// The file's settings; none when it does not exist.
    fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
}

/// A node on this machine, whose state directory may be readable.
fn is_local(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The resolved address and key.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub base_url: String,
    pub api_key: String,
}

impl Connection {
    /// The base URL and key, from the first place that has each.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let path = UserConfig::path();
        let file = match &path {
            Some(path) => UserConfig::load(path)?,
            None => UserConfig::default(),
        };
        let base_url = self
            .base_url
            .clone()
            .or(file.base_url)
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let admin_key = self.state_dir.join("admin.key");
        let api_key = self
            .api_key
            .clone()
            .or(file.api_key)
            .or_else(|| {
                is_local(&base_url)
                    .then(|| std::fs::read_to_string(&admin_key).ok())
                    .flatten()
                    .map(|k| k.trim().to_string())
            })
            .filter(|k| !k.is_empty())
            .ok_or_else(|| NoApiKey {
                config: path.map_or("the config file".into(), |p| p.display().to_string()),
                local: if is_local(&base_url) {
                    format!(" (or make {} readable)", admin_key.display())
                } else {
                    String::new()
                },
            })?;
        Ok(Resolved { base_url, api_key })
    }

    /// A client of the node.
    pub fn client(&self) -> anyhow::Result<Client> {
        let Resolved { base_url, api_key } = self.resolve()?;
        Ok(Client::new(base_url, api_key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_local() {
        for url in [
            "http://127.0.0.1:4747",
            "http://localhost",
            "http://[::1]:80/x",
            "127.0.0.2:1",
        ] {
            assert!(is_local(url), "{url}");
        }
        for url in [
            "https://api.ai2in.dev",
            "http://10.0.0.1:4747",
            "http://127.0.0.1.nip.io",
        ] {
            assert!(!is_local(url), "{url}");
        }
    }
}
