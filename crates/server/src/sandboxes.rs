//! Sandbox routes: lifecycle, shell, exposed ports and metrics.

use std::collections::HashMap;

use ai2in_api::{
    CreateSandboxRequest, ExposeRequest, ExposeResponse, SandboxInfo, SandboxList, SandboxMetrics,
    SandboxStatus, SetTimeoutRequest, ShellRequest, ShellResponse,
};
use ai2in_node::{ListFilter, Node};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody};

type Answer<T> = Result<Json<T>, ApiError>;

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

pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.get_sandbox(&who, &id)?))
}

pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_sandbox(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn timeout(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SetTimeoutRequest>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_timeout(&who, &id, req.timeout_ms).await?))
}

pub async fn pause(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_paused(&who, &id, true).await?))
}

pub async fn metrics(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxMetrics> {
    Ok(Json(node.metrics(&who, &id).await?))
}

/// `GET /metrics`: the node's own metrics for Prometheus (admin keys only).
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

pub async fn expose(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ExposeRequest>,
) -> Answer<ExposeResponse> {
    Ok(Json(node.expose(&who, &id, req.port).await?))
}

pub async fn resume(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Answer<SandboxInfo> {
    Ok(Json(node.set_paused(&who, &id, false).await?))
}

pub async fn shell(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ShellRequest>,
) -> Answer<ShellResponse> {
    Ok(Json(node.shell(&who, &id, req).await?))
}
