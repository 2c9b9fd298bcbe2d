//! Admin routes for API keys.

use ai2in_api::{CreateKeyRequest, CreatedKey, KeyList};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// Create an API key (admin). The secret is in this answer only.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, description = "The key with its secret.", body = CreatedKey)))]
pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    Ok((StatusCode::CREATED, Json(node.create_key(&who, req)?)))
}

/// List API keys (admin), without secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "The keys.", body = KeyList)))]
pub async fn list(State(node): State<Node>, Auth(who): Auth) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: node.list_keys(&who)?,
    }))
}

/// Revoke an API key (admin), effective at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id, `key_…`.")),
    responses((status = 204, description = "Revoked.")))]
pub async fn revoke(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.revoke_key(&who, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
