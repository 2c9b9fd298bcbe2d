//! Volume routes: create, list, get, delete.

use ai2in_api::{CreateVolumeRequest, ErrorBody, Volume, VolumeList};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// Create a volume: a persistent filesystem of `size_bytes` that outlives sandboxes.
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = CreateVolumeRequest,
    responses(
        (status = 201, description = "The new volume, empty.", body = Volume),
        (status = 409, description = "The tenant has a volume of that name.", body = ErrorBody),
        (status = 429, description = "The tenant's volume quota is used up.", body = ErrorBody),
        (status = 503, description = "This node cannot make volumes.", body = ErrorBody),
        (status = 507, description = "The node's disk is full.", body = ErrorBody),
    ))]
pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<CreateVolumeRequest>,
) -> Result<(StatusCode, Json<Volume>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(node.create_volume(&who, req).await?),
    ))
}

/// List the caller's volumes.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes",
    responses((status = 200, description = "The volumes, oldest first.", body = VolumeList)))]
pub async fn list(State(node): State<Node>, Auth(who): Auth) -> Result<Json<VolumeList>, ApiError> {
    Ok(Json(VolumeList {
        volumes: node.list_volumes(&who).await?,
    }))
}

/// A volume, by id or by name.
#[utoipa::path(get, path = "/v1/volumes/{id}", tag = "volumes",
    responses(
        (status = 200, description = "The volume.", body = Volume),
        (status = 404, description = "The tenant has no such volume.", body = ErrorBody),
    ))]
pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Volume>, ApiError> {
    Ok(Json(node.get_volume(&who, &id).await?))
}

/// Delete a volume and everything on it.
#[utoipa::path(delete, path = "/v1/volumes/{id}", tag = "volumes",
    responses(
        (status = 204, description = "Deleted; its space is freed."),
        (status = 404, description = "The tenant has no such volume.", body = ErrorBody),
        (status = 409, description = "A live sandbox mounts it (named in the sentence).", body = ErrorBody),
    ))]
pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_volume(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
