//! [`Keys`]: API keys of the node (admin scope).

use ai2in_api::{CreateKeyRequest, CreatedKey, KeyInfo, KeyList};

use crate::error::Result;
use crate::http::Http;

/// The API keys of the caller's tenant; from [`crate::Client::keys`].
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::CreateKeyRequest;
/// let created = client
///     .keys()
///     .create(CreateKeyRequest {
///         name: "ci".into(),
///         scopes: vec!["sandboxes:read".into()],
///         tenant: None,
///     })
///     .await?;
/// println!("store it now: {}", created.key);
/// client.keys().revoke(&created.info.id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Keys {
    http: Http,
}

impl Keys {
    pub(crate) fn new(http: Http) -> Self {
        Keys { http }
    }

    /// Creates a key; its secret (`key`) is in this answer only.
    pub async fn create(&self, request: CreateKeyRequest) -> Result<CreatedKey> {
        self.http.post("/v1/keys", &request).await
    }

    /// The keys that are not revoked (without secrets).
    pub async fn list(&self) -> Result<Vec<KeyInfo>> {
        let list: KeyList = self.http.get("/v1/keys").await?;
        Ok(list.keys)
    }

    /// Revokes a key at once.
    pub async fn revoke(&self, id: &str) -> Result<()> {
        self.http.delete(&format!("/v1/keys/{id}")).await
    }
}
