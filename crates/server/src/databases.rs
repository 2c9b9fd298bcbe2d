//! Database routes: engines, create, list, get, reset_password, delete.

use ai2in_api::{CreateDatabaseRequest, Database, DatabaseList, EngineList, ErrorBody};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

/// The engines and versions this node serves.
#[utoipa::path(get, path = "/v1/databases/engines", tag = "databases",
    responses((status = 200, description = "What a create may ask for.", body = EngineList)))]
pub async fn engines(
    State(node): State<Node>,
    Auth(who): Auth,
) -> Result<Json<EngineList>, ApiError> {
    Ok(Json(EngineList {
        engines: node.database_engines(&who).await?,
    }))
}

/// Create a database: a real server of the engine, with its data on a volume of its own and
/// its own credentials, reached at the url it answers.
///
/// Answers once the server accepts connections.
#[utoipa::path(post, path = "/v1/databases", tag = "databases", request_body = CreateDatabaseRequest,
    responses(
        (status = 201, description = "The database, `available`; its url holds the password.", body = Database),
        (status = 400, description = "An engine or version this node does not serve (the sentence lists those it does), or an invalid field.", body = ErrorBody),
        (status = 429, description = "The tenant's database quota is used up.", body = ErrorBody),
        (status = 503, description = "The node has no room (or no free port, or cannot make volumes).", body = ErrorBody),
    ))]
pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<CreateDatabaseRequest>,
) -> Result<(StatusCode, Json<Database>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(node.create_database(&who, req).await?),
    ))
}

/// List the caller's databases.
#[utoipa::path(get, path = "/v1/databases", tag = "databases",
    responses((status = 200, description = "The databases, oldest first.", body = DatabaseList)))]
pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
) -> Result<Json<DatabaseList>, ApiError> {
    Ok(Json(DatabaseList {
        databases: node.list_databases(&who)?,
    }))
}

/// A database, its url with its password.
#[utoipa::path(get, path = "/v1/databases/{id}", tag = "databases",
    responses(
        (status = 200, description = "The database.", body = Database),
        (status = 404, description = "The tenant has no such database.", body = ErrorBody),
    ))]
pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Database>, ApiError> {
    Ok(Json(node.get_database(&who, &id)?))
}

/// Give the database's user a new password; the old one stops working at once (sessions
/// already open go on).
#[utoipa::path(post, path = "/v1/databases/{id}/reset_password", tag = "databases",
    responses(
        (status = 200, description = "The database with its new url.", body = Database),
        (status = 404, description = "The tenant has no such database.", body = ErrorBody),
        (status = 409, description = "Its server is restarting; try again shortly.", body = ErrorBody),
    ))]
pub async fn reset_password(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Database>, ApiError> {
    Ok(Json(node.reset_database_password(&who, &id).await?))
}

/// Delete the database: its server, its data and its port.
#[utoipa::path(delete, path = "/v1/databases/{id}", tag = "databases",
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "The tenant has no such database.", body = ErrorBody),
    ))]
pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_database(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
