//! Sandbox routes: lifecycle, shell, exposed ports and metrics.

use std::collections::HashMap;

use ai2in_api::{
    CreateSandboxRequest, ErrorBody, ExposeRequest, ExposeResponse, Image, SandboxInfo,
    SandboxList, SandboxMetrics, SandboxStatus, SetTimeoutRequest, ShellRequest, ShellResponse,
    SnapshotRequest,
};
use ai2in_node::{ListFilter, Node};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path};

type Answer<T> = Result<Json<T>, ApiError>;

/// Create a sandbox.
///
/// Answers once the sandbox can run code. Unset fields take the node's defaults (image
/// `host`, lifetime 300 000 ms).
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = CreateSandboxRequest,
    responses(
        (status = 201, description = "The new sandbox, ready to run code.", body = SandboxInfo),
        (status = 429, description = "A quota of the tenant is used up.", body = ErrorBody),
        (status = 503, description = "The node is at capacity.", body = ErrorBody),
    ))]
pub async fn create(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<CreateSandboxRequest>,
) -> Result<(StatusCode, Json<SandboxInfo>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(node.create_sandbox(&who, req).await?),
    ))
}

/// List the caller's sandboxes.
///
/// Filters: `status=running` and `metadata.KEY=VALUE` (all must match).
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    params(
        ("status" = Option<SandboxStatus>, Query, description = "Only sandboxes in this status."),
        ("metadata.KEY" = Option<String>, Query, description = "Only sandboxes whose metadata has KEY with this value (any KEY)."),
    ),
    responses((status = 200, description = "The sandboxes.", body = SandboxList)))]
pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<SandboxList> {
    let mut filter = ListFilter::default();
    for (key, value) in query {
        if key == "status" {
            let status = serde_json::from_value::<SandboxStatus>(serde_json::Value::String(
                value.clone(),
            ))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "status filter {value:?} is not one of running, paused, starting, stopping"
                    ),
                )
            })?;
            filter.status = Some(status);
        } else if let Some(k) = key.strip_prefix("metadata.") {
            filter.metadata.insert(k.to_string(), value);
        } else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown filter {key:?}; use status or metadata.KEY"),
            ));
        }
    }
    Ok(Json(SandboxList {
        sandboxes: node.list_sandboxes(&who, &filter)?,
    }))
}

/// Get a sandbox: status, lifetime, node, resources.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    responses((status = 200, description = "The sandbox.", body = SandboxInfo)))]
pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.get_sandbox(&who, &id)?))
}

/// Destroy a sandbox and everything in it.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    responses((status = 204, description = "Destroyed.")))]
pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_sandbox(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Snapshot the sandbox's files as a new image.
///
/// The image is the sandbox's image plus everything it wrote (volumes excluded), read while
/// the sandbox is frozen for the moment it takes; the sandbox goes on afterwards. Create
/// sandboxes from it like from any image: each is a fork of this one's files.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/snapshot", tag = "sandboxes", request_body = SnapshotRequest,
    responses(
        (status = 201, description = "The new image, `source: snapshot`.", body = Image),
        (status = 409, description = "The sandbox's writable layer is a tmpfs (the node's `[storage] writable_layer`).", body = ErrorBody),
        (status = 413, description = "What the sandbox wrote is over the node's layer limits.", body = ErrorBody),
        (status = 507, description = "The node's disk is full.", body = ErrorBody),
    ))]
pub async fn snapshot(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SnapshotRequest>,
) -> Result<(StatusCode, Json<Image>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(node.snapshot_sandbox(&who, &id, req).await?),
    ))
}

/// Set the sandbox's hard lifetime: it is destroyed `timeout_ms` from now (at most 24 h).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/timeout", tag = "sandboxes", request_body = SetTimeoutRequest,
    responses((status = 200, description = "The sandbox with its new `end_at`.", body = SandboxInfo)))]
pub async fn timeout(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SetTimeoutRequest>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_timeout(&who, &id, req.timeout_ms).await?))
}

/// Pause a sandbox: its processes are frozen until resumed (idempotent).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/pause", tag = "sandboxes",
    responses((status = 200, description = "The paused sandbox.", body = SandboxInfo)))]
pub async fn pause(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_paused(&who, &id, true).await?))
}

/// Live resource figures of a sandbox, read from the kernel.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/metrics", tag = "sandboxes",
    responses((status = 200, description = "Its CPU, memory, disk, tasks and network.", body = SandboxMetrics)))]
pub async fn metrics(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxMetrics> {
    Ok(Json(node.metrics(&who, &id).await?))
}

/// The node's own metrics in the Prometheus text format (admin keys only).
#[utoipa::path(get, path = "/metrics", tag = "node", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain")))]
pub async fn node_metrics(
    State(node): State<Node>,
    Auth(who): Auth,
) -> Result<impl IntoResponse, ApiError> {
    let text = node.prometheus(&who)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

/// A public URL for a port inside the sandbox, served by the node's proxy (HTTP and
/// WebSocket).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/expose", tag = "sandboxes", request_body = ExposeRequest,
    responses((status = 200, description = "The port and its URL.", body = ExposeResponse)))]
pub async fn expose(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExposeRequest>,
) -> Answer<ExposeResponse> {
    Ok(Json(node.expose(&who, &id, req.port).await?))
}

/// Resume a paused sandbox (idempotent).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/resume", tag = "sandboxes",
    responses((status = 200, description = "The running sandbox.", body = SandboxInfo)))]
pub async fn resume(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_paused(&who, &id, false).await?))
}

/// Run `/bin/sh -c cmd` to completion and answer its output and exit code.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/shell", tag = "shell", operation_id = "run", request_body = ShellRequest,
    responses((status = 200, description = "Output and exit code; on a timeout `exit_code` is null and `error` says so.", body = ShellResponse)))]
pub async fn shell(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ShellRequest>,
) -> Answer<ShellResponse> {
    Ok(Json(node.shell(&who, &id, req).await?))
}
