//! Admin routes for API keys.

use ai2in_api::{CreateKeyRequest, CreatedKey, KeyList};
use ai2in_node::Node;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody};

pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    Ok((StatusCode::CREATED, Json(node.create_key(&who, req)?)))
}

pub async fn list(State(node): State<Node>, Auth(who): Auth) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: node.list_keys(&who)?,
    }))
}

pub async fn revoke(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.revoke_key(&who, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
