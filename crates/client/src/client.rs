//! [`Client`]: a node's address and key; creates, lists and connects to sandboxes, and
//! manages images, volumes, services, databases, keys and nodes.

use std::collections::BTreeMap;

use ai2in_api::{CreateSandboxRequest, SandboxInfo, SandboxList, SandboxStatus};
use reqwest::Method;

use crate::databases::Databases;
use crate::error::Result;
use crate::http::Http;
use crate::images::Images;
use crate::keys::Keys;
use crate::nodes::Nodes;
use crate::sandbox::Sandbox;
use crate::services::Services;
use crate::volumes::Volumes;

/// Where a local node listens by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:4747";

/// A connection to one node, as one API key. Cheap to clone; clones share their
/// connection pool.
///
/// ```no_run
/// # async fn demo() -> ai2in_client::Result<()> {
/// let client = ai2in_client::Client::new("http://127.0.0.1:4747", "ai2in_live_…")?;
/// for sandbox in client.list_sandboxes(&Default::default()).await? {
///     println!("{} {:?}", sandbox.id, sandbox.status);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    http: Http,
}

/// Which sandboxes [`Client::list_sandboxes`] answers: all must match.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    /// Only sandboxes in this status.
    pub status: Option<SandboxStatus>,
    /// Only sandboxes whose metadata has each of these keys with this value.
    pub metadata: BTreeMap<String, String>,
}

impl SandboxFilter {
    /// The query parameters: `status=…` and `metadata.KEY=VALUE`.
    fn query(&self) -> Vec<(String, String)> {
        let status = self.status.map(|s| {
            let name = serde_json::to_value(s).expect("a status serializes");
            (
                "status".to_string(),
                name.as_str().unwrap_or_default().to_string(),
            )
        });
        let metadata = self
            .metadata
            .iter()
            .map(|(k, v)| (format!("metadata.{k}"), v.clone()));
        status.into_iter().chain(metadata).collect()
    }
}

impl Client {
    /// A client of the node at `base_url` (e.g. `http://127.0.0.1:4747`) using `api_key`.
    pub fn new(base_url: impl AsRef<str>, api_key: impl Into<String>) -> Result<Self> {
        Ok(Client {
            http: Http::new(base_url.as_ref(), Some(api_key.into()))?,
        })
    }

    /// A client configured by `AI2IN_BASE_URL` (default [`DEFAULT_BASE_URL`]) and
    /// `AI2IN_API_KEY`. Without a key every call answers [`crate::Error::Unauthenticated`].
    pub fn from_env() -> Result<Self> {
        let base_url = std::env::var("AI2IN_BASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let api_key = std::env::var("AI2IN_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        Ok(Client {
            http: Http::new(&base_url, api_key)?,
        })
    }

    /// The node's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.http.base_url()
    }

    /// Creates a sandbox and answers once it can run code.
    ///
    /// ```no_run
    /// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
    /// use ai2in_client::CreateSandbox;
    /// let sandbox = client
    ///     .create_sandbox(CreateSandbox {
    ///         timeout_ms: Some(60_000),
    ///         metadata: Some([("job".to_string(), "demo".to_string())].into()),
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_sandbox(&self, request: CreateSandboxRequest) -> Result<Sandbox> {
        let info: SandboxInfo = self.http.post("/v1/sandboxes", &request).await?;
        Ok(Sandbox::new(self.http.clone(), info.id))
    }

    /// A handle on the sandbox `id`, without a request: errors (e.g. an unknown id) come
    /// with its first call.
    pub fn sandbox(&self, id: impl Into<String>) -> Sandbox {
        Sandbox::new(self.http.clone(), id.into())
    }

    /// The key's live sandboxes that match `filter`.
    pub async fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<SandboxInfo>> {
        let request = self
            .http
            .request(Method::GET, "/v1/sandboxes")
            .query(&filter.query());
        let list: SandboxList = self.http.send(request).await?.json().await?;
        Ok(list.sandboxes)
    }

    /// The tenant's images: pull, import, list, get, delete.
    pub fn images(&self) -> Images {
        Images::new(self.http.clone())
    }

    /// The tenant's volumes: create, list, get, delete.
    pub fn volumes(&self) -> Volumes {
        Volumes::new(self.http.clone())
    }

    /// The tenant's hosted services: deploy, list, get, logs, follow_logs, redeploy, stop,
    /// start, delete.
    pub fn services(&self) -> Services {
        Services::new(self.http.clone())
    }

    /// The tenant's managed databases: create, list, get, engines, reset_password, delete.
    pub fn databases(&self) -> Databases {
        Databases::new(self.http.clone())
    }

    /// The node's API keys (admin).
    pub fn keys(&self) -> Keys {
        Keys::new(self.http.clone())
    }

    /// The cluster's nodes (admin): list, drain. A node on its own is a cluster of one.
    pub fn nodes(&self) -> Nodes {
        Nodes::new(self.http.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_query_parameters() {
        let filter = SandboxFilter {
            status: Some(SandboxStatus::Paused),
            metadata: [("team".to_string(), "a b".to_string())].into(),
        };
        assert_eq!(
            filter.query(),
            [("status", "paused"), ("metadata.team", "a b")].map(|(k, v)| (k.into(), v.into()))
        );
    }
}
