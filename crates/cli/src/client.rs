//! How user commands reach a node: its URL, an API key, and errors as the node words them.

use std::path::PathBuf;

use ai2in_api::ErrorBody;
use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{DEFAULT_LISTEN, DEFAULT_STATE_DIR};

/// Where and as whom to talk to a node.
#[derive(clap::Args)]
pub struct Connection {
    /// Base URL of the node
    #[arg(long, env = "AI2IN_BASE_URL", default_value_t = format!("http://{DEFAULT_LISTEN}"))]
    url: String,
    /// API key; by default the admin key of a local node's state directory
    #[arg(long, env = "AI2IN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// State directory of a local node, to find its admin key
    #[arg(long, env = "AI2IN_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Print JSON instead of text for people
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    /// The node's base URL.
    pub fn url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// The API key to use.
    pub fn key(&self) -> anyhow::Result<String> {
        if let Some(key) = &self.api_key {
            return Ok(key.clone());
        }
        let path = self.state_dir.join("admin.key");
        std::fs::read_to_string(&path)
            .map(|k| k.trim().to_string())
            .with_context(|| {
                format!(
                    "no API key: set AI2IN_API_KEY or pass --api-key (could not read {})",
                    path.display()
                )
            })
    }

    /// A request to `path` of the API.
    pub fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        Ok(Client::builder()
            .timeout(None)
            .build()?
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .bearer_auth(self.key()?))
    }

    /// POSTs `body` to `path` and decodes the answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        Ok(send(self.request(Method::POST, path)?.json(body))?.json()?)
    }
}

/// Sends `req`; the response on success, else the node's error sentence.
pub fn send(req: RequestBuilder) -> anyhow::Result<Response> {
    let response = req.send().context("could not reach the node")?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let message = response
        .json::<ErrorBody>()
        .map(|b| b.error)
        .unwrap_or_else(|_| status.to_string());
    bail!("{message} ({status})")
}
