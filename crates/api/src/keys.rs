use serde::{Deserialize, Serialize};

/// `POST /v1/keys` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A label for people.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// Scopes such as `sandboxes:write`; `admin` implies all.
    pub scopes: Vec<String>,
    /// The tenant the key acts for; the caller's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub tenant: Option<String>,
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    /// `key_…`.
    pub id: String,
    /// Its label.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The tenant it acts for.
    pub tenant: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
}

/// The answer to `POST /v1/keys`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    /// The key's description.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The secret, `ai2in_live_…`.
    pub key: String,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    /// Keys that are not revoked.
    pub keys: Vec<KeyInfo>,
}
