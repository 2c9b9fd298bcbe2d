//! Hosting routes: deploy, list, get, logs (and their stream), redeploy, stop, start, delete.

use std::convert::Infallible;
use std::time::Duration;

use ai2in_api::{
    DeployServiceRequest, ErrorBody, RedeployServiceRequest, Service, ServiceList, ServiceLogs,
    ServiceLogsRequest,
};
use ai2in_node::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use crate::error::ApiError;
use crate::extract::{Auth, JsonBody, Path, Query};

/// Deploy a service: a long-running process from an image, restarted when it exits, at a
/// stable URL when it has an `internal_port`.
///
/// Answers once the first instance's process has started (`deploying`); the service is
/// `running` when its port accepts connections (and `health_path` answers 2xx or 3xx).
#[utoipa::path(post, path = "/v1/hosting/services", tag = "hosting", request_body = DeployServiceRequest,
    responses(
        (status = 201, description = "The new service, `deploying`.", body = Service),
        (status = 400, description = "A field is invalid, or the image has neither an entrypoint nor a cmd and no `start_cmd` was given.", body = ErrorBody),
        (status = 409, description = "The tenant has a service of that name.", body = ErrorBody),
        (status = 429, description = "The tenant's service quota is used up.", body = ErrorBody),
        (status = 503, description = "The node has no room for the instance.", body = ErrorBody),
    ))]
pub async fn deploy(
    State(node): State<Node>,
    Auth(who): Auth,
    JsonBody(req): JsonBody<DeployServiceRequest>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(node.deploy_service(&who, req).await?),
    ))
}

/// List the caller's services.
#[utoipa::path(get, path = "/v1/hosting/services", tag = "hosting",
    responses((status = 200, description = "The services, oldest first.", body = ServiceList)))]
pub async fn list(
    State(node): State<Node>,
    Auth(who): Auth,
) -> Result<Json<ServiceList>, ApiError> {
    Ok(Json(ServiceList {
        services: node.list_services(&who)?,
    }))
}

/// A service, by id or by name.
#[utoipa::path(get, path = "/v1/hosting/services/{id}", tag = "hosting",
    responses(
        (status = 200, description = "The service.", body = Service),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn get(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(node.get_service(&who, &id)?))
}

/// Lines of the service's log: what its processes wrote (`stdout`, `stderr`) and what the
/// node did (`system`), kept across restarts, redeploys and node restarts.
#[utoipa::path(post, path = "/v1/hosting/services/{id}/logs", tag = "hosting", request_body = ServiceLogsRequest,
    responses(
        (status = 200, description = "The lines after `since` (oldest first), or the most recent ones.", body = ServiceLogs),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn logs(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ServiceLogsRequest>,
) -> Result<Json<ServiceLogs>, ApiError> {
    Ok(Json(node.service_logs(&who, &id, req.since, req.limit)?))
}

/// Follow the service's log as Server-Sent Events: `event: log` with a LogLine as data (its
/// `seq` as the event id), the lines after `since` first (the last 100 without it), then
/// each new line; a keep-alive comment while nothing is written.
#[utoipa::path(get, path = "/v1/hosting/services/{id}/logs/stream", tag = "hosting", params(ServiceLogsRequest),
    responses(
        (status = 200, description = "`event: log` with a LogLine as data.", body = ref("#/components/schemas/LogStreamEvent"), content_type = "text/event-stream"),
        (status = 400, description = "A query parameter is unknown or not a number.", body = ErrorBody),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn logs_stream(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(query): Query<ServiceLogsRequest>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let follower = node.follow_service_logs(&who, &id, query.since)?;
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let line = follower.next().await?;
        let event = Event::default()
            .event("log")
            .id(line.seq.to_string())
            .json_data(&line)
            .unwrap_or_default();
        Some((Ok(event), follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Redeploy the service: pull its image again, start a new instance (with the fields given
/// changed) beside the running one, switch the URL to it once it is ready, then stop the old
/// one (SIGTERM, and SIGKILL after the grace period).
#[utoipa::path(post, path = "/v1/hosting/services/{id}/redeploy", tag = "hosting", request_body = RedeployServiceRequest,
    responses(
        (status = 200, description = "The service, its new instance serving.", body = Service),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
        (status = 422, description = "The new instance never got ready; the old one keeps serving.", body = ErrorBody),
    ))]
pub async fn redeploy(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RedeployServiceRequest>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(node.redeploy_service(&who, &id, req).await?))
}

/// Stop the service: SIGTERM, then SIGKILL after the grace period. Its settings, logs and
/// URL are kept (the URL answers 503).
#[utoipa::path(post, path = "/v1/hosting/services/{id}/stop", tag = "hosting",
    responses(
        (status = 200, description = "The service, `stopped`.", body = Service),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn stop(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(node.stop_service(&who, &id).await?))
}

/// Start a stopped service again.
#[utoipa::path(post, path = "/v1/hosting/services/{id}/start", tag = "hosting",
    responses(
        (status = 200, description = "The service, `deploying` (unchanged unless it was stopped).", body = Service),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn start(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(node.start_service(&who, &id).await?))
}

/// Delete the service: its instance, its log and its URL.
#[utoipa::path(delete, path = "/v1/hosting/services/{id}", tag = "hosting",
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "The tenant has no such service.", body = ErrorBody),
    ))]
pub async fn delete(
    State(node): State<Node>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.delete_service(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
